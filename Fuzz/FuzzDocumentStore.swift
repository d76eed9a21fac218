// The projection store of the fuzz targets: what the daemon's writer keeps in LMDB, in its stored forms.

import IncidentDomain
import StrictJSON

/// Projections kept in their stored forms and read back on every access, as the daemon's LMDB store does: an
/// incident in its binary encoding, a city as canonical JSON.
struct DocumentStore: ProjectionStore {
    var incidents: [String: [UInt8]] = [:]
    var cities: [String: [UInt8]] = [:]

    mutating func incident(_ id: String) throws -> IncidentState? {
        guard let bytes = incidents[id] else { return nil }
        return try IncidentState(encoded: bytes, incident: id)
    }

    mutating func city(_ id: String) throws -> CityState? {
        guard let bytes = cities[id] else { return nil }
        return try CityState(json: JSONReader().read(bytes))
    }

    mutating func put(_ incident: IncidentState) { incidents[incident.incident] = incident.encoded() }
    mutating func put(_ city: CityState) { cities[city.cityId] = city.json.canonicalBytes() }
    mutating func allCities() throws -> [CityState] { try cities.values.map { try CityState(json: JSONReader().read($0)) } }

    /// Each city's index of incident dates, kept as the in-memory store keeps it.
    var dates = InMemoryProjections()
    mutating func addIncidentDate(_ date: IncidentDate, reinstating: Bool) { dates.addIncidentDate(date, reinstating: reinstating) }
    mutating func removeIncidentDate(_ date: IncidentDate) throws { try dates.removeIncidentDate(date) }
    mutating func incidentDateSpan(of cityId: String) -> (first: String, last: String)? { dates.incidentDateSpan(of: cityId) }
}
