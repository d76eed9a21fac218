import Foundation
import TOMLKit

extension Gazetteer {
    /// Parses a gazetteer in the format of `config/cities.toml`: an array of `[[city]]` tables with
    /// `id`, `name`, `aliases`, `region`, `population`, `lat`, `lon`, `geonamesId`.
    /// - Throws: `GazetteerError` naming the line of a TOML syntax error, or the entry and field
    ///   that is missing, of the wrong type, unknown or invalid.
    public init(tomlText: String) throws {
        let table: TOMLTable
        do {
            table = try TOMLTable(string: tomlText)
        } catch let error as TOMLParseError {
            throw GazetteerError(
                "invalid TOML at line \(error.source.begin.line), column \(error.source.begin.column): \(error.description)"
            )
        }
        for key in table.keys where key != "city" {
            throw GazetteerError("unknown top-level key \"\(key)\" (expected only [[city]] tables)")
        }
        guard let value = table["city"] else {
            throw GazetteerError("no [[city]] entries")
        }
        guard let entries = value.array else {
            throw GazetteerError("\"city\" must be an array of tables ([[city]]), found \(value.type)")
        }
        var cities: [City] = []
        for index in 0..<entries.count {
            guard let entry = entries[index].table else {
                throw GazetteerError("city #\(index + 1): expected a table, found \(entries[index].type)")
            }
            cities.append(try Self.city(from: entry, number: index + 1))
        }
        try self.init(cities: cities)
    }

    /// Reads and parses a gazetteer file (see `init(tomlText:)`); errors name the path.
    public init(contentsOfFile path: String) throws {
        let text: String
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            throw GazetteerError("\(path): is a directory, not a gazetteer file (a TOML file of [[city]] tables)")
        }
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw GazetteerError("\(path): cannot read: \(error.localizedDescription)")
        }
        do {
            try self.init(tomlText: text)
        } catch let error as GazetteerError {
            throw GazetteerError("\(path): \(error.message)")
        }
    }

    private static let cityKeys: Set<String> = ["id", "name", "aliases", "region", "population", "lat", "lon", "geonamesId"]

    private static func city(from table: TOMLTable, number position: Int) throws -> City {
        var label = "city #\(position)"
        if let id = table["id"]?.string { label += " (id \"\(id)\")" }
        for key in table.keys.sorted() where !cityKeys.contains(key) {
            throw GazetteerError("\(label): unknown field \"\(key)\"")
        }
        guard let id = try string(table, "id", label) else { throw fieldError(label, "id", "is missing") }
        guard let name = try string(table, "name", label) else { throw fieldError(label, "name", "is missing") }

        var aliases: [String] = []
        if let value = table["aliases"] {
            guard let array = value.array else {
                throw fieldError(label, "aliases", "must be an array of strings, found \(value.type)")
            }
            for i in 0..<array.count {
                guard let alias = array[i].string else {
                    throw fieldError(label, "aliases", "item \(i + 1) must be a string, found \(array[i].type)")
                }
                aliases.append(alias)
            }
        }
        return City(
            id: id,
            name: name,
            aliases: aliases,
            region: try string(table, "region", label),
            population: try integer(table, "population", label),
            latitude: try number(table, "lat", label),
            longitude: try number(table, "lon", label),
            geonamesId: try integer(table, "geonamesId", label)
        )
    }

    private static func fieldError(_ label: String, _ field: String, _ problem: String) -> GazetteerError {
        GazetteerError("\(label): field \"\(field)\" \(problem)")
    }

    private static func string(_ table: TOMLTable, _ field: String, _ label: String) throws -> String? {
        guard let value = table[field] else { return nil }
        guard let s = value.string else { throw fieldError(label, field, "must be a string, found \(value.type)") }
        return s
    }

    private static func integer(_ table: TOMLTable, _ field: String, _ label: String) throws -> Int? {
        guard let value = table[field] else { return nil }
        guard let i = value.int else { throw fieldError(label, field, "must be an integer, found \(value.type)") }
        return i
    }

    private static func number(_ table: TOMLTable, _ field: String, _ label: String) throws -> Double? {
        guard let value = table[field] else { return nil }
        if let d = value.double { return d }
        if let i = value.int { return Double(i) }
        throw fieldError(label, field, "must be a number, found \(value.type)")
    }
}
