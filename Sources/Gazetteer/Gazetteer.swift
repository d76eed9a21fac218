/// The gazetteer: resolves any known spelling of a city to its canonical entry, and suggests near names for unknown ones.
///
/// Immutable once built; every lookup table is computed at init, so `resolve` is one normalization
/// and one dictionary lookup.
public struct Gazetteer: Sendable, Equatable {
    /// All cities, sorted by id.
    public let cities: [City]

    private let byId: [String: City]
    /// Normalized spelling (id, name or alias) → city id.
    private let index: [String: String]
    /// Every normalized spelling with its city, in a fixed order, for suggestions.
    private let spellings: [Spelling]

    private struct Spelling: Sendable {
        let characters: [Character]
        let cityId: String
    }

    /// Builds a gazetteer from cities.
    /// - Throws: `GazetteerError` on an invalid or duplicate id, an empty name, an invalid region,
    ///   population, coordinate or GeoNames id, or a spelling that normalizes to two different cities.
    public init(cities: [City]) throws {
        var byId: [String: City] = [:]
        for city in cities {
            try Self.validate(city)
            if byId[city.id] != nil {
                throw GazetteerError("duplicate city id \"\(city.id)\"")
            }
            byId[city.id] = city
        }
        let sorted = cities.sorted { $0.id < $1.id }

        var index: [String: String] = [:]
        // Which raw spelling first claimed each key, for error messages.
        var claimedBy: [String: String] = [:]
        var spellings: [Spelling] = []
        for city in sorted {
            for raw in [city.id, city.name] + city.aliases {
                let key = Self.normalize(raw)
                if key.isEmpty {
                    throw GazetteerError("city \"\(city.id)\": alias \"\(raw)\" is empty once normalized")
                }
                if let other = index[key] {
                    if other != city.id {
                        throw GazetteerError(
                            "alias \"\(raw)\" of city \"\(city.id)\" matches \"\(claimedBy[key] ?? key)\" of city \"\(other)\""
                            + " (both normalize to \"\(key)\"); a spelling may belong to one city only"
                        )
                    }
                    continue
                }
                index[key] = city.id
                claimedBy[key] = raw
                spellings.append(Spelling(characters: Array(key), cityId: city.id))
            }
        }
        self.cities = sorted
        self.byId = byId
        self.index = index
        self.spellings = spellings
    }

    /// The city with this canonical id (exact, not normalized).
    public func city(id: String) -> City? {
        byId[id]
    }

    /// The city whose id, name or any alias equals `name` after normalization, or nil.
    public func resolve(_ name: String) -> City? {
        let key = Self.normalize(name)
        guard !key.isEmpty, let id = index[key] else { return nil }
        return byId[id]
    }

    /// The cities among `others` (cities known elsewhere than in the gazetteer, as for
    /// ``suggestions(for:limit:alsoAmong:)``) with a spelling (its id, its name or an alias) that matches `name` as
    /// ``resolve(_:)`` matches the gazetteer's own, in id order (byte by byte), so that the answer depends only on
    /// what `others` hold, not on their order: more than one, and the spelling names none of them alone. One whose id
    /// the gazetteer has is ignored, and so is the gazetteer itself: a spelling it knows is ``resolve(_:)``'s to answer.
    public func cities(spelled name: String, among others: [City]) -> [City] {
        let key = Self.normalize(name)
        guard !key.isEmpty else { return [] }
        return others.filter { city in
            byId[city.id] == nil && ([city.id, city.name] + city.aliases).contains { Self.normalize($0) == key }
        }.sorted { $0.id.utf8.lexicographicallyPrecedes($1.id.utf8) }
    }

    /// Display names of the cities closest to `name`, nearest first.
    ///
    /// The distance of a city is the smallest Levenshtein distance between the normalized `name`
    /// and the normalized id, name or any alias of that city; a city is suggested only if that
    /// distance is at most `max(2, length / 3)`, where length is that of the normalized `name`,
    /// and smaller than that length. Ties are broken by display name, then id.
    ///
    /// `others` are cities known elsewhere than in the gazetteer (those a log added with `allowNewCity`), searched
    /// by their id, name and aliases alike; one whose id the gazetteer has is ignored.
    public func suggestions(for name: String, limit: Int = 3, alsoAmong others: [City] = []) -> [String] {
        guard limit > 0 else { return [] }
        let query = Array(Self.normalize(name))
        guard !query.isEmpty else { return [] }
        let threshold = min(max(2, query.count / 3), query.count - 1)
        guard threshold >= 0 else { return [] }

        var cities = byId
        var candidates = spellings
        for city in others where cities[city.id] == nil {
            cities[city.id] = city
            for raw in [city.id, city.name] + city.aliases {
                let key = Self.normalize(raw)
                if !key.isEmpty { candidates.append(Spelling(characters: Array(key), cityId: city.id)) }
            }
        }
        var best: [String: Int] = [:]
        for spelling in candidates {
            let bound = min(threshold, best[spelling.cityId].map { $0 - 1 } ?? threshold)
            guard bound >= 0, abs(spelling.characters.count - query.count) <= bound else { continue }
            if let d = Self.levenshtein(query, spelling.characters, bound: bound) {
                best[spelling.cityId] = min(d, best[spelling.cityId] ?? Int.max)
            }
        }
        let ranked = best.compactMap { id, distance -> (Int, City)? in
            cities[id].map { (distance, $0) }
        }.sorted { a, b in
            if a.0 != b.0 { return a.0 < b.0 }
            if a.1.name != b.1.name { return a.1.name < b.1.name }
            return a.1.id < b.1.id
        }
        var seen = Set<String>()
        var names: [String] = []
        for (_, city) in ranked where seen.insert(city.name).inserted {
            names.append(city.name)
            if names.count == limit { break }
        }
        return names
    }

    public static func == (lhs: Gazetteer, rhs: Gazetteer) -> Bool {
        lhs.cities == rhs.cities
    }

    // MARK: - Validation

    private static func validate(_ city: City) throws {
        guard isValidId(city.id) else {
            throw GazetteerError(
                "city id \"\(city.id)\" is invalid: it must match [a-z0-9][a-z0-9-]* and be at most \(maxIdLength) characters"
            )
        }
        let label = "city \"\(city.id)\""
        if city.name.allSatisfy({ $0.isWhitespace }) {
            throw GazetteerError("\(label): field \"name\" is empty")
        }
        if let region = city.region, !isValidRegion(region) {
            throw GazetteerError("\(label): field \"region\" \"\(region)\" is not an ISO 3166-2 code such as \"UA-63\"")
        }
        if let population = city.population, population < 0 {
            throw GazetteerError("\(label): field \"population\" must not be negative")
        }
        if (city.latitude == nil) != (city.longitude == nil) {
            throw GazetteerError("\(label): fields \"lat\" and \"lon\" must be given together")
        }
        if let lat = city.latitude, !(lat.isFinite && (-90...90).contains(lat)) {
            throw GazetteerError("\(label): field \"lat\" must be between -90 and 90")
        }
        if let lon = city.longitude, !(lon.isFinite && (-180...180).contains(lon)) {
            throw GazetteerError("\(label): field \"lon\" must be between -180 and 180")
        }
        if let geonamesId = city.geonamesId, geonamesId <= 0 {
            throw GazetteerError("\(label): field \"geonamesId\" must be positive")
        }
    }

    /// Longest canonical id; `slug` never produces a longer one.
    public static let maxIdLength = 64

    /// Whether `id` has the form of a canonical city id: `[a-z0-9][a-z0-9-]*`, at most ``maxIdLength`` characters.
    public static func isValidId(_ id: String) -> Bool {
        let scalars = Array(id.unicodeScalars)
        guard let first = scalars.first, scalars.count <= maxIdLength, isLowerAlnum(first) else { return false }
        return scalars.allSatisfy { isLowerAlnum($0) || $0 == "-" }
    }

    static func isLowerAlnum(_ s: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(s) || ("0"..."9").contains(s)
    }

    /// ISO 3166-2: two-letter country code, hyphen, one to three letters or digits.
    static func isValidRegion(_ region: String) -> Bool {
        let parts = region.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2 else { return false }
        let country = parts[0].unicodeScalars, sub = parts[1].unicodeScalars
        return country.count == 2 && country.allSatisfy { ("A"..."Z").contains($0) }
            && (1...3).contains(sub.count) && sub.allSatisfy { ("A"..."Z").contains($0) || ("0"..."9").contains($0) }
    }

    // MARK: - Edit distance

    /// Levenshtein distance between `a` and `b`, or nil when it exceeds `bound`: what makes a near miss, of a city
    /// here and of a setting's or a command's name elsewhere.
    public static func levenshtein(_ a: [Character], _ b: [Character], bound: Int) -> Int? {
        if a.isEmpty { return b.count <= bound ? b.count : nil }
        if b.isEmpty { return a.count <= bound ? a.count : nil }
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            var rowMin = current[0]
            for j in 1...b.count {
                let substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)
                current[j] = min(substitution, previous[j] + 1, current[j - 1] + 1)
                rowMin = min(rowMin, current[j])
            }
            if rowMin > bound { return nil }
            swap(&previous, &current)
        }
        let d = previous[b.count]
        return d <= bound ? d : nil
    }
}
