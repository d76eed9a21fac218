/// A head of the log published earlier (`status`'s `headHash`, and its `position`), as a user gives it: `HASH`, or
/// `POSITION:HASH` (`0:` and the zero hash for the empty log's). `incidentctl verify --expect-head` and
/// `incidentd --recover-from … --expect-head` both read it here.
public struct PublishedHeadArgument: Sendable, Hashable {
    /// The position published with the hash, when it was given.
    public var position: UInt64?
    /// The 32 bytes of the hash.
    public var hash: [UInt8]

    /// Why an argument is not a head: what to say after the option's name.
    public struct Problem: Error, Sendable, CustomStringConvertible {
        public let description: String
    }

    /// Reads `argument` (the hash's hexadecimal digits in either case).
    public init(_ argument: String) throws(Problem) {
        let parts = argument.split(separator: ":", omittingEmptySubsequences: false)
        let form = "\(Self.quoted(argument, limit: 100)) is not a head: give the headHash that status showed (64 hexadecimal digits), or POSITION:HASH with its position"
        guard parts.count <= 2, let hashText = parts.last, let bytes = ChainHash.bytes(hashHex: String(hashText)) else {
            throw Problem(description: form)
        }
        if parts.count == 2 {
            // Position 0 is the empty log's, whose head status shows as the zero hash.
            guard let position = UInt64(parts[0]), position >= 1 || bytes == ChainHash.zero else {
                let digits = !parts[0].isEmpty && parts[0].utf8.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
                let problem = digits && UInt64(parts[0]) == nil
                    ? "is out of range: positions go up to \(UInt64.max)" : "is not a position (a whole number from 1)"
                throw Problem(
                    description:
                        "\(Self.quoted(String(parts[0]), limit: 100)) \(problem): give POSITION:HASH as status showed them, or the hash alone")
            }
            self.position = position
        }
        hash = bytes
    }

    /// `text` as given, or its first `limit` characters and how many more there are.
    static func quoted(_ text: String, limit: Int) -> String {
        text.count <= limit ? text : "\(text.prefix(limit))… (\(text.count - limit) more characters)"
    }
}
