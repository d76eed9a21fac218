import Foundation
import StrictJSON
import Testing

/// The work a daemon does at start before it serves (a rebuild of the projections, an upgrade of an older
/// format) spans many commits. A power cut at any of their syncs must leave a log that the next start finishes
/// the work on, with every event kept and the same answers as before.
@Suite("Reliability: power cuts during the work at start", .serialized)
struct ReliabilityPowerCutTests {
    /// A daemon holding the article and 300 more incidents, stopped; the `cities` document it answered.
    private static func storedLog() throws -> (Daemon, events: Int, cities: String) {
        let daemon = try Daemon()
        let client = try daemon.client()
        let article = try Repository.articleEvents()
        #expect(try client.appendEvents(article)["ok"]?.boolValue == true)
        let events = RebuildTests.events(incidents: 300)
        try client.appendEvents(events, inBatchesOf: 100)
        let cities = try daemon.ctl(["cities", "--format", "json"])
        #expect(cities.status == 0, "\(cities.stderr)")
        #expect(daemon.stop() == 0)
        return (daemon, article.count + events.count, cities.stdout)
    }

    @Test(
        "a power cut at each of the first six syncs of a rebuild at start: the next start rebuilds again, every event kept, the same cities",
        StorageFaults.required)
    func powerCutDuringRebuild() throws {
        let library = try #require(StorageFaults.library)
        let (daemon, count, cities) = try Self.storedLog()
        let power = PowerCut(root: daemon.root)
        for point in 1...6 {
            let report = try power.startUntilItFails(
                daemon, library: library, point: point, seed: point, arguments: ["--rebuild-projections"])
            try daemon.start()
            let events = try checkLogIntegrity(daemon, try daemon.client())
            #expect(events.count == count, "after \(report)")
            let after = try daemon.ctl(["cities", "--format", "json"])
            #expect(after.stdout == cities, "after \(report)")
            #expect(daemon.stop() == 0)
        }
    }

    @Test(
        "a power cut at each sync of the rebuild a changed gazetteer brings: the next start finishes it, and cities is replay's with the new gazetteer",
        StorageFaults.required)
    func powerCutDuringGazetteerRebuild() throws {
        let library = try #require(StorageFaults.library)
        let setup = try GazetteerChangeTests.Setup()
        let daemon = try setup.daemon()
        let client = try daemon.client()
        #expect(try client.appendEvents(try Repository.articleEvents())["ok"]?.boolValue == true)
        try client.appendEvents(RebuildTests.events(incidents: 300), inBatchesOf: 100)
        let count = Int(try client.headPosition())
        #expect(daemon.stop() == 0)
        let power = PowerCut(root: daemon.root)
        var population = 148851
        // The rebuild's seven durability points: the syncs of the pages of its first four commits (the projections
        // dropped; the incidents; the cities' dates; the cities' indexes of incidents), each taking the meta page
        // of the commit before along, since until the projection mark none is waited for; the sync of the last of
        // those meta pages; then the last commit (the cities, the projection mark and the gazetteer's digest), a
        // sync of its pages and a write of its meta page. Each start has a gazetteer of its own, so that each
        // rebuilds.
        for point in 1...7 {
            try setup.edit("population = \(population)\n", "population = \(1000 + point)\n")
            population = 1000 + point
            let report = try power.startUntilItFails(daemon, library: library, point: point, seed: point, arguments: [])
            try daemon.start()
            // Whatever the cut left (the old projections and digest, or none), this start rebuilds again; after a
            // cut at the last write of all, the new ones may be whole.
            #expect(GazetteerChangeTests.rebuilds(daemon) == 1 || point == 7, "after \(report): \(daemon.log)")
            let client = try daemon.client()
            #expect(try client.allEvents().count == count, "after \(report)")
            let verify = try client.call("verify")
            #expect(verify["intact"]?.boolValue == true, "after \(report): \(verify)")
            try GazetteerChangeTests.expectCitiesAreReplay(daemon, gazetteer: setup.gazetteer, "after \(report)")
            #expect(try GazetteerChangeTests.city(daemon, "Melitopol")["population"]?.intValue == Int64(population))
            #expect(daemon.stop() == 0)
        }
    }

    @Test(
        "a power cut at either sync of an upgrade from format 2: the next start upgrades again, every event kept, the same answers",
        StorageFaults.required)
    func powerCutDuringUpgrade() throws {
        let library = try #require(StorageFaults.library)
        let (daemon, count, cities) = try Self.storedLog()
        let incidents = RebuildTests.events(incidents: 300).compactMap { $0["incident"]?.stringValue }
        try daemon.start()
        let before = try FormatUpgradeTests.answers(try daemon.client(), incidents)
        #expect(daemon.stop() == 0)
        let power = PowerCut(root: daemon.root)
        // This log upgrades in one commit (of up to 100,000 entries): its data pages' sync, then its meta page.
        for point in 1...2 {
            try FormatUpgradeTests.downgradeToFormat2(daemon.dataDir)
            let report = try power.startUntilItFails(daemon, library: library, point: point, seed: point, arguments: [])
            try daemon.start()
            let client = try daemon.client()
            let events = try checkLogIntegrity(daemon, client)
            #expect(events.count == count, "after \(report)")
            #expect(try FormatUpgradeTests.answers(client, incidents) == before, "after \(report)")
            #expect(try daemon.ctl(["cities", "--format", "json"]).stdout == cities, "after \(report)")
            #expect(daemon.stop() == 0)
        }
    }
}
