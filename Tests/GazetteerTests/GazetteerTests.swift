import Foundation
import Gazetteer
import Testing

/// `config/cities.toml`, found from this file: Tests/GazetteerTests/ → repository root.
private let citiesFile: String = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent()
    .deletingLastPathComponent()
    .deletingLastPathComponent()
    .appendingPathComponent("config/cities.toml")
    .path

private func fileGazetteer() throws -> Gazetteer {
    try Gazetteer(contentsOfFile: citiesFile)
}

/// Runs `body`, expecting a `GazetteerError`, and returns its message.
private func gazetteerError(_ body: () throws -> Void) -> String? {
    do {
        try body()
        return nil
    } catch let error as GazetteerError {
        return error.message
    } catch {
        return "unexpected error type: \(error)"
    }
}

@Suite struct ConfigFileTests {
    @Test func embeddedAndFileAreEqual() throws {
        let file = try fileGazetteer()
        #expect(file == Gazetteer.embedded)
        #expect(file.cities == Gazetteer.embedded.cities)
        #expect(file.cities.map(\.id) == ["berdiansk", "kupiansk", "melitopol"])
    }

    @Test func citiesCarryTheirData() throws {
        let g = try fileGazetteer()
        let kupiansk = try #require(g.city(id: "kupiansk"))
        #expect(kupiansk.name == "Kupiansk")
        #expect(kupiansk.region == "UA-63")
        #expect(kupiansk.population == 26262)
        #expect(kupiansk.geonamesId == nil)
        #expect(kupiansk.latitude != nil && kupiansk.longitude != nil)
        let melitopol = try #require(g.city(id: "melitopol"))
        #expect(melitopol.name == "Melitopol")
        #expect(melitopol.region == "UA-23")
        #expect(melitopol.geonamesId == 701404)
        let berdiansk = try #require(g.city(id: "berdiansk"))
        #expect(berdiansk.name == "Berdiansk")
        #expect(berdiansk.region == "UA-23")
        #expect(berdiansk.geonamesId == 712451)
        #expect(g.city(id: "Kupiansk") == nil, "city(id:) is exact")
    }

    @Test func everyListedSpellingResolvesToItsCity() throws {
        let g = try fileGazetteer()
        for city in g.cities {
            for spelling in [city.id, city.name] + city.aliases {
                #expect(g.resolve(spelling)?.id == city.id, "\(spelling) should resolve to \(city.id)")
            }
        }
    }

    @Test(arguments: [
        // The article's spellings.
        ("Kupyansk", "kupiansk"), ("Kup’yansk", "kupiansk"), ("Kup'yansk", "kupiansk"),
        ("Melitopoli", "melitopol"), ("Meritopoli", "melitopol"),
        ("Berdyans’k", "berdiansk"), ("Berdyans'k", "berdiansk"),
        // Official romanisation and common English.
        ("Kupiansk", "kupiansk"), ("Melitopol", "melitopol"), ("Berdiansk", "berdiansk"), ("Berdyansk", "berdiansk"),
        // Ukrainian and Russian Cyrillic.
        ("Куп'янськ", "kupiansk"), ("Купʼянськ", "kupiansk"), ("Купянск", "kupiansk"),
        ("Мелітополь", "melitopol"), ("Мелитополь", "melitopol"),
        ("Бердянськ", "berdiansk"), ("Бердянск", "berdiansk"),
    ])
    func requiredSpellingsResolve(spelling: String, id: String) throws {
        #expect(try fileGazetteer().resolve(spelling)?.id == id)
    }
}

@Suite struct MatchingTests {
    let g = Gazetteer.embedded

    @Test(arguments: [
        ("KUPYANSK", "kupiansk"), ("kup`yansk", "kupiansk"), ("Berdyansʼk", "berdiansk"),
        ("  kup’yans’k  ", "kupiansk"), ("Kup‘yansk", "kupiansk"), ("Kup´yansk", "kupiansk"),
        ("MÉLITOPOL", "melitopol"), ("Bérdiánsk", "berdiansk"), ("melitopol’", "melitopol"),
        ("КУПЯНСК", "kupiansk"), ("куп’янськ", "kupiansk"),
        // Decomposed input (NFD): и + combining breve is й.
        ("Бердянск".decomposedStringWithCanonicalMapping, "berdiansk"),
        ("kupiansk", "kupiansk"),
    ])
    func variantsResolve(spelling: String, id: String) {
        #expect(g.resolve(spelling)?.id == id, "\(spelling)")
    }

    @Test func unknownNamesDoNotResolve() {
        #expect(g.resolve("Paris") == nil)
        #expect(g.resolve("") == nil)
        #expect(g.resolve("   ") == nil)
        #expect(g.resolve("Melitopl") == nil)
        #expect(g.resolve("Kupiansk-2") == nil)
    }

    @Test func normalize() {
        #expect(Gazetteer.normalize("  Kup’yans’k  ") == "kupyansk")
        #expect(Gazetteer.normalize("Nova   Kakhovka") == "nova kakhovka")
        #expect(Gazetteer.normalize("Ivano-Frankivsk") == "ivano-frankivsk")
        #expect(Gazetteer.normalize("Ivano–Frankivsk") == "ivano-frankivsk")
        #expect(Gazetteer.normalize("Café") == "cafe")
        #expect(Gazetteer.normalize("Куп'янськ") == "купянськ")
        // й and ї stay letters of their own; ё folds to е.
        #expect(Gazetteer.normalize("Київ") == "київ")
        #expect(Gazetteer.normalize("Гайсин") == "гайсин")
        #expect(Gazetteer.normalize("Гайсин") != Gazetteer.normalize("Гаисин"))
        #expect(Gazetteer.normalize("Ёлки") == "елки")
        #expect(Gazetteer.normalize("\t\n") == "")
    }
}

@Suite struct SuggestionTests {
    let g = Gazetteer.embedded

    @Test func nearMisspellingsSuggestTheCity() {
        #expect(g.suggestions(for: "Melitopl") == ["Melitopol"])
        #expect(g.suggestions(for: "Kupyansc") == ["Kupiansk"])
        #expect(g.suggestions(for: "Berdansk").first == "Berdiansk")
        #expect(g.suggestions(for: "Мелитопль") == ["Melitopol"])
    }

    @Test func farNamesGetNoSuggestion() {
        #expect(g.suggestions(for: "Paris") == [])
        #expect(g.suggestions(for: "Kyiv") == [])
        #expect(g.suggestions(for: "") == [])
        #expect(g.suggestions(for: "x") == [])
    }

    @Test func suggestionsAreDeduplicatedRankedAndLimited() throws {
        // "aaaatowm" is 1 edit from Aaaatown, 2 from Aaabtown, 3 (too far) from Aabbtown.
        let g = try Gazetteer(cities: [
            City(id: "aaaa-town", name: "Aaaatown", aliases: ["Aaaa Town", "Aaaa-Town"]),
            City(id: "aaab-town", name: "Aaabtown"),
            City(id: "aabb-town", name: "Aabbtown"),
        ])
        #expect(g.suggestions(for: "aaaatowm") == ["Aaaatown", "Aaabtown"])
        #expect(g.suggestions(for: "aaaatowm", limit: 1) == ["Aaaatown"])
        #expect(g.suggestions(for: "aaabtown", limit: 1) == ["Aaabtown"])
        #expect(g.suggestions(for: "aaaatowm", limit: 0) == [])
        // Ties (Aaaatown and Aaabtown both 1 edit away) are broken by name.
        #expect(g.suggestions(for: "aaaxtown") == ["Aaaatown", "Aaabtown", "Aabbtown"])
    }

    @Test func slugsCutToAnIdsLengthSayTheyAre() {
        let long = "Selyshche-imeni-" + String(repeating: "Tarasa-Hryhorovycha-Shevchenka-", count: 3)
        #expect(Gazetteer.slug(long + "Pivnichne") == Gazetteer.slug(long + "Pivdenne"))
        #expect(Gazetteer.slugHoldingAll(long + "Pivnichne")?.holdsAll == false)
        #expect(Gazetteer.slugHoldingAll("Kharkiv")?.holdsAll == true)
        #expect(Gazetteer.slugHoldingAll(String(repeating: "a", count: 64))?.holdsAll == true)
        #expect(Gazetteer.slugHoldingAll(String(repeating: "a", count: 65))?.holdsAll == false)
    }

    @Test func citiesKnownElsewhereAreSuggestedByAnySpelling() {
        let kharkiv = City(id: "kharkiv", name: "Kharkiv", aliases: ["Харків"])
        #expect(g.suggestions(for: "Kharkov") == [])
        #expect(g.suggestions(for: "Kharkov", alsoAmong: [kharkiv]) == ["Kharkiv"])
        #expect(g.suggestions(for: "Харкив", alsoAmong: [kharkiv]) == ["Kharkiv"])
        // One with a gazetteer id is the gazetteer's city, not a second one.
        let shadow = City(id: "melitopol", name: "Melitopl")
        #expect(g.suggestions(for: "Melitopll", alsoAmong: [shadow]) == ["Melitopol"])
    }

    @Test func citiesKnownElsewhereAreFoundByAnyOfTheirSpellings() {
        let prystan = City(id: "hola-prystan-khersonska", name: "Hola Prystan", aliases: ["Гола Пристань", "Hola Prystan'"])
        for spelling in ["Hola Prystan", "HOLA  PRYSTAN", "Hola Prystan’", "гола пристань", "hola-prystan-khersonska"] {
            #expect(g.cities(spelled: spelling, among: [prystan]).map(\.id) == [prystan.id], "\(spelling)")
        }
        #expect(g.cities(spelled: "Hola Prystan", among: []).isEmpty)
        #expect(g.cities(spelled: "Hola", among: [prystan]).isEmpty)
        #expect(g.cities(spelled: "", among: [prystan]).isEmpty)
        // Two cities with the spelling are both named, in id order, whatever their order.
        let other = City(id: "hola-prystan-2", name: "Hola Prystan")
        #expect(g.cities(spelled: "hola prystan", among: [prystan, other]).map(\.id) == ["hola-prystan-2", prystan.id])
        #expect(g.cities(spelled: "hola prystan", among: [other, prystan]).map(\.id) == ["hola-prystan-2", prystan.id])
        // One with a gazetteer id is the gazetteer's city, which is not searched here.
        #expect(g.cities(spelled: "Melitopl", among: [City(id: "melitopol", name: "Melitopl")]).isEmpty)
        #expect(g.cities(spelled: "Melitopol", among: [City(id: "melitopol-2", name: "Melitopol")]).map(\.id) == ["melitopol-2"])
    }
}

@Suite struct ValidationTests {
    @Test func duplicateAliasAcrossCitiesIsRefused() {
        let message = gazetteerError {
            _ = try Gazetteer(cities: [
                City(id: "kupiansk", name: "Kupiansk", aliases: ["Kupyansk"]),
                City(id: "other", name: "Other", aliases: ["Kup’yansk"]),
            ])
        }
        #expect(message?.contains("Kup’yansk") == true, "\(message ?? "no error")")
        #expect(message?.contains("kupiansk") == true)
        #expect(message?.contains("other") == true)
    }

    @Test func duplicateAliasInTOMLIsRefused() {
        let toml = """
            [[city]]
            id = "a"
            name = "Alpha"
            [[city]]
            id = "b"
            name = "Beta"
            aliases = ["ALPHA"]
            """
        let message = gazetteerError { _ = try Gazetteer(tomlText: toml) }
        #expect(message?.contains("ALPHA") == true, "\(message ?? "no error")")
    }

    @Test func repeatedSpellingWithinOneCityIsFine() throws {
        let g = try Gazetteer(cities: [City(id: "kupiansk", name: "Kupiansk", aliases: ["Kupiansk", "KUPIANSK", "Kup'iansk"])])
        #expect(g.resolve("kupiansk")?.id == "kupiansk")
    }

    @Test func duplicateIdIsRefused() {
        let message = gazetteerError {
            _ = try Gazetteer(cities: [City(id: "a", name: "Alpha"), City(id: "a", name: "Other")])
        }
        #expect(message?.contains("duplicate city id \"a\"") == true, "\(message ?? "no error")")
    }

    @Test(arguments: ["", "Kupiansk", "-a", "a b", "kupiańsk", String(repeating: "a", count: 65)])
    func invalidIdIsRefused(id: String) {
        #expect(gazetteerError { _ = try Gazetteer(cities: [City(id: id, name: "X")]) } != nil)
    }

    @Test func invalidFieldsAreRefused() {
        #expect(gazetteerError { _ = try Gazetteer(cities: [City(id: "a", name: " ")]) }?.contains("name") == true)
        #expect(gazetteerError { _ = try Gazetteer(cities: [City(id: "a", name: "A", region: "Kharkiv")]) }?.contains("region") == true)
        #expect(gazetteerError { _ = try Gazetteer(cities: [City(id: "a", name: "A", population: -1)]) }?.contains("population") == true)
        #expect(gazetteerError { _ = try Gazetteer(cities: [City(id: "a", name: "A", latitude: 91, longitude: 0)]) }?.contains("lat") == true)
        #expect(gazetteerError { _ = try Gazetteer(cities: [City(id: "a", name: "A", latitude: 1)]) }?.contains("lon") == true)
        #expect(gazetteerError { _ = try Gazetteer(cities: [City(id: "a", name: "A", aliases: ["'’"])]) }?.contains("empty") == true)
    }

    @Test func malformedTOMLIsRefused() {
        let message = gazetteerError { _ = try Gazetteer(tomlText: "[[city]]\nid = \"a\nname = \"A\"\n") }
        #expect(message?.contains("invalid TOML at line") == true, "\(message ?? "no error")")
    }

    @Test func tomlErrorsNameTheEntryAndField() {
        let wrongType = gazetteerError {
            _ = try Gazetteer(tomlText: "[[city]]\nid = \"a\"\nname = \"A\"\n[[city]]\nid = \"b\"\nname = \"B\"\npopulation = \"many\"\n")
        }
        #expect(wrongType?.contains("city #2 (id \"b\")") == true, "\(wrongType ?? "no error")")
        #expect(wrongType?.contains("\"population\"") == true)

        let missing = gazetteerError { _ = try Gazetteer(tomlText: "[[city]]\nname = \"A\"\n") }
        #expect(missing?.contains("city #1: field \"id\" is missing") == true, "\(missing ?? "no error")")

        let unknown = gazetteerError { _ = try Gazetteer(tomlText: "[[city]]\nid = \"a\"\nname = \"A\"\ngeonamesID = 1\n") }
        #expect(unknown?.contains("unknown field \"geonamesID\"") == true, "\(unknown ?? "no error")")

        let badAlias = gazetteerError { _ = try Gazetteer(tomlText: "[[city]]\nid = \"a\"\nname = \"A\"\naliases = [\"x\", 3]\n") }
        #expect(badAlias?.contains("aliases") == true, "\(badAlias ?? "no error")")

        #expect(gazetteerError { _ = try Gazetteer(tomlText: "") }?.contains("no [[city]]") == true)
        #expect(gazetteerError { _ = try Gazetteer(tomlText: "city = 3\n") } != nil)
        #expect(gazetteerError { _ = try Gazetteer(tomlText: "cities = []\n") }?.contains("cities") == true)
    }

    @Test func integerCoordinatesAreAccepted() throws {
        let g = try Gazetteer(tomlText: "[[city]]\nid = \"a\"\nname = \"A\"\nlat = 46\nlon = 35.5\n")
        #expect(g.cities.first?.latitude == 46)
    }

    @Test func missingFileIsRefusedWithItsPath() {
        let message = gazetteerError { _ = try Gazetteer(contentsOfFile: "/nonexistent/cities.toml") }
        #expect(message?.contains("/nonexistent/cities.toml") == true, "\(message ?? "no error")")
    }
}

@Suite struct SlugTests {
    @Test(arguments: [
        ("Нова Каховка", "nova-kakhovka"),
        ("Куп'янськ", "kupiansk"),
        ("Купянск", "kupiansk"),
        ("Бердянськ", "berdiansk"),
        ("Запоріжжя", "zaporizhzhia"),
        ("Київ", "kyiv"),
        ("Харків", "kharkiv"),
        ("Южноукраїнськ", "yuzhnoukrainsk"),
        ("Енергодар", "enerhodar"),
        ("Мелитополь", "melytopol"),       // no Russian-only letter: read as Ukrainian
        ("Свободный", "svobodnyy"),        // ы: Russian table
        ("Kup’yansk", "kupyansk"),
        ("  Nova   Kakhovka ", "nova-kakhovka"),
        ("Saint-Étienne", "saint-etienne"),
        ("Łódź", "lodz"),
        ("Bila Tserkva (Kyiv oblast)", "bila-tserkva-kyiv-oblast"),
    ])
    func slugs(name: String, slug: String) {
        #expect(Gazetteer.slug(name) == slug)
    }

    @Test func emptyOrSymbolOnlyGivesNil() {
        #expect(Gazetteer.slug("") == nil)
        #expect(Gazetteer.slug("  ’'  ") == nil)
        #expect(Gazetteer.slug("—·—") == nil)
    }

    @Test func slugIsBoundedAndValid() throws {
        let long = Gazetteer.slug(String(repeating: "ab ", count: 40))
        let s = try #require(long)
        #expect(s.count <= 64)
        #expect(!s.hasSuffix("-") && !s.hasPrefix("-"))
        // A slug is always accepted as a city id.
        _ = try Gazetteer(cities: [City(id: s, name: "Long")])
    }
}

@Suite struct ExampleFileTests {
    /// Every city spelling used in `examples/article.jsonl` is known to the gazetteer.
    @Test func articleCitiesResolve() throws {
        let path = URL(fileURLWithPath: citiesFile)
            .deletingLastPathComponent()
            .deletingLastPathComponent()
            .appendingPathComponent("examples/article.jsonl")
        let text = try String(contentsOf: path, encoding: .utf8)
        var resolved: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            guard let data = object?["data"] as? [String: Any], let city = data["city"] as? String else { continue }
            resolved[city] = Gazetteer.embedded.resolve(city)?.id ?? "?"
        }
        #expect(resolved == ["Kup’yansk": "kupiansk", "Melitopoli": "melitopol", "Berdyans’k": "berdiansk"])
    }
}
