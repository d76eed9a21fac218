import Foundation
import StrictJSON
import Testing

/// A report keeps the `cityId` it was stored with (SPEC §2) through `export --format jsonl | append`: the export
/// writes it, and `append` stores it as given, so that a log moved to another daemon does not have its reports
/// resolved again by that daemon's gazetteer.
@Suite("Export keeps cities")
struct ExportCityTests {
    @Test("append stores a report's cityId as given, over the gazetteer's reading of city; one not of an id's form is invalid_event naming data.cityId, an unknown one unknown_city naming it (with allowNewCity a new city, if of the form of a new city's id); a retry compares it with the stored one")
    func appendTakesCityId() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        func report(_ cityId: String, city: String = "Melitopol", eventId: String? = nil, day: Int = 1) -> JSONValue {
            Wire.report(city: city, occurredAt: "2022-03-0\(day)", eventId: eventId, extraData: ["cityId": .string(cityId)])
        }
        // Not of a city id's form, with or without allowNewCity: invalid_event, naming the field.
        for bad in ["Kupiansk", "kup iansk", "-kupiansk", String(repeating: "a", count: 65)] {
            for allow in [false, true] {
                let refused = try client.appendEvents([report(bad)], allowNewCity: allow)
                #expect(refused.errorCode == "invalid_event" && refused["error"]?["field"] == "data.cityId", "\(bad): \(refused)")
            }
        }
        // A city neither the gazetteer nor the log knows: unknown_city naming the field, with suggestions.
        let unknown = try client.appendEvents([report("kupiansks")])
        #expect(unknown.errorCode == "unknown_city" && unknown["error"]?["field"] == "data.cityId", "\(unknown)")
        #expect(unknown["error"]?["message"]?.stringValue?.hasPrefix("data.cityId: ") == true, "\(unknown)")
        #expect(unknown["error"]?["suggestions"] == ["Kupiansk"], "\(unknown)")
        // With allowNewCity, a new city, if its id is of the form the daemon makes.
        let notMade = try client.appendEvents([report("kupiansk--east")], allowNewCity: true)
        #expect(notMade.errorCode == "invalid_event" && notMade["error"]?["field"] == "data.cityId", "\(notMade)")
        #expect(try client.headPosition() == 0)
        let made = try client.appendEvents([report("kupiansk-east", city: "Kupiansk East")], allowNewCity: true)
        #expect(made["incidents"] == ["kupiansk-east-2022-03-01-demonstration"], "\(made)")
        #expect(try client.call("city", ["city": "kupiansk-east"])["city"]?["name"] == "Kupiansk East")

        // The id wins over the gazetteer's reading of the spelling, which is kept as reported.
        let eventId = Wire.uuid()
        let stored = try client.appendEvents([report("kupiansk", city: "Melitopol", eventId: eventId, day: 2)])
        #expect(stored["incidents"] == ["kupiansk-2022-03-02-demonstration"], "\(stored)")
        let kupiansk = try client.call("city", ["city": "kupiansk"])["city"]
        #expect(kupiansk?["incidents"]?["total"] == 1 && kupiansk?["aliasesSeen"] == ["Melitopol"], "\(String(describing: kupiansk))")
        #expect(try client.call("city", ["city": "melitopol"])["city"]?["incidents"]?["total"] == 0)

        // A retry: with the stored id, or without one, it is the stored event; with another id it is not.
        var sent = report("kupiansk", city: "Melitopol", eventId: eventId, day: 2)
        #expect(try client.appendEvents([sent])["alreadyStored"] == [0])
        sent = Wire.setting(sent, "incident", "kupiansk-2022-03-02-demonstration")
        #expect(try client.appendEvents([sent])["alreadyStored"] == [0])
        #expect(try client.appendEvents([Wire.setting(sent, "data.cityId", nil)])["alreadyStored"] == [0])
        let other = try client.appendEvents([Wire.setting(sent, "data.cityId", "melitopol")])
        #expect(other.errorCode == "duplicate_event_id", "\(other)")
        #expect(try client.headPosition() == 2)
        #expect(daemon.stop() == 0)
    }
}
