/// One canonical city of the gazetteer.
public struct City: Sendable, Hashable, Codable {
    /// Canonical id, a lowercase slug (`kupiansk`); stored with every report as `cityId`.
    public let id: String
    /// English display name (official Ukrainian romanisation: `Kupiansk`).
    public let name: String
    /// Every other spelling users type, as listed in the gazetteer (not normalized).
    public let aliases: [String]
    /// ISO 3166-2 code of the region (`UA-63`).
    public let region: String?
    /// Pre-war population.
    public let population: Int?
    /// WGS 84 latitude of the city centre, decimal degrees.
    public let latitude: Double?
    /// WGS 84 longitude of the city centre, decimal degrees.
    public let longitude: Double?
    /// GeoNames id, where known.
    public let geonamesId: Int?

    public init(
        id: String,
        name: String,
        aliases: [String] = [],
        region: String? = nil,
        population: Int? = nil,
        latitude: Double? = nil,
        longitude: Double? = nil,
        geonamesId: Int? = nil
    ) {
        self.id = id
        self.name = name
        self.aliases = aliases
        self.region = region
        self.population = population
        self.latitude = latitude
        self.longitude = longitude
        self.geonamesId = geonamesId
    }
}

/// A gazetteer that cannot be built: a malformed file, a missing or invalid field, a duplicate id,
/// or a spelling claimed by two cities. The message names the offending entry and field.
public struct GazetteerError: Error, CustomStringConvertible, Equatable {
    public let message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { message }
}
