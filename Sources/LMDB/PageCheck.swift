/// What ``Environment/checkPages()`` found in the pages of one snapshot of `data.mdb`.
public struct PageCheckReport: Sendable, Hashable {
    /// The transaction that committed the snapshot checked.
    public var transactionID: Int
    /// The page size of the file, in bytes.
    public var pageSize: Int
    /// The last page of the snapshot (`mm_last_pg`); pages 0 and 1 are LMDB's meta pages.
    public var lastPageNumber: Int
    /// The pages reachable from the meta page: every branch, leaf and overflow page of every tree, the free list's
    /// own included.
    public var pagesInUse: Int
    /// The pages the free list names.
    public var freePages: Int
    /// The named databases, in name order, with what LMDB counts of each; as far as the check got, when it found
    /// damage.
    public var databases: [CheckedDatabase]
    /// Named databases of sorted duplicates (`MDB_DUPSORT`), whose pages the check does not read: this module
    /// never makes one. While there is one, pages that are neither reachable nor free are not looked for.
    public var skippedDatabases: [String]
    /// The first problem found; `nil` when every page read checked out.
    public var damage: PageDamage?

    /// Whether no problem was found.
    public var isIntact: Bool { damage == nil }

    /// What a check of the snapshot of transaction `transactionID` found; ``Environment/checkPages()`` makes them.
    public init(
        transactionID: Int, pageSize: Int, lastPageNumber: Int, pagesInUse: Int, freePages: Int,
        databases: [CheckedDatabase], skippedDatabases: [String], damage: PageDamage?
    ) {
        self.transactionID = transactionID
        self.pageSize = pageSize
        self.lastPageNumber = lastPageNumber
        self.pagesInUse = pagesInUse
        self.freePages = freePages
        self.databases = databases
        self.skippedDatabases = skippedDatabases
        self.damage = damage
    }
}

/// A named database whose pages ``Environment/checkPages()`` walked.
public struct CheckedDatabase: Sendable, Hashable {
    /// Its name, as its key in the main database (UTF-8).
    public var name: String
    /// Its entries, as its record counts them and its leaves hold them.
    public var entries: Int
    /// Its branch, leaf and overflow pages.
    public var pages: Int

    /// A named database as a check found it.
    public init(name: String, entries: Int, pages: Int) {
        self.name = name
        self.entries = entries
        self.pages = pages
    }
}

/// A page of `data.mdb` that is not what LMDB's format says it must be: the first problem
/// ``Environment/checkPages()`` found, naming the database, the page and what is wrong with it.
///
/// LMDB keeps no checksums: it would read such a page through its map as it finds it, and follow what it says,
/// to a wrong answer, to `MDB_PAGE_NOTFOUND` or `MDB_CORRUPTED`, or to a fault that kills the process.
public struct PageDamage: Error, Sendable, Hashable, CustomStringConvertible {
    /// One of the trees of a data file.
    public enum Tree: Sendable, Hashable, CustomStringConvertible {
        /// LMDB's free list (`FREE_DBI`): the pages that are free, by the transaction that freed them.
        case freeList
        /// The unnamed database (`MAIN_DBI`), which holds the record of each named database.
        case main
        /// A named database.
        case named(String)

        /// The name of a named database; `(main)` and `(free list)` for LMDB's own two.
        public var name: String {
            switch self {
            case .freeList: return "(free list)"
            case .main: return "(main)"
            case .named(let name): return name
            }
        }

        public var description: String {
            switch self {
            case .freeList: return "the free list"
            case .main: return "the main database"
            case .named(let name): return "database \(name)"
            }
        }
    }

    /// The tree the page belongs to; `nil` for a page that belongs to none and is not free either.
    public var database: Tree?
    /// The page's number (its byte offset in the file, divided by the page size).
    public var page: Int
    /// What is wrong with it, in words.
    public var problem: String

    /// The problem `problem` found in page `page`, of tree `database` (`nil` for a page in no tree and not free).
    public init(database: Tree?, page: Int, problem: String) {
        self.database = database
        self.page = page
        self.problem = problem
    }

    /// The page, its database and the problem, in one line.
    public var description: String {
        guard let database else { return "page \(page): \(problem)" }
        return "page \(page) of \(database): \(problem)"
    }
}
