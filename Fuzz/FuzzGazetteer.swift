// The gazetteer of the fuzz targets: built in code (Gazetteer's TOML loading, TOMLKit, is left out of the fuzz
// builds) with the three cities of the article and their spellings, as the compiled-in gazetteer has them.

import Gazetteer

func fuzzGazetteer() -> Gazetteer {
    do {
        return try Gazetteer(cities: [
            City(
                id: "kupiansk", name: "Kupiansk",
                aliases: ["Kupians'k", "Kupians’k", "Kupyansk", "Kup'yansk", "Kup’yansk", "Kup'yans'k", "Kupjansk",
                          "Kupiańsk", "Куп'янськ", "Купʼянськ", "Купянск"],
                region: "UA-63", population: 26262, latitude: 49.7106, longitude: 37.6156),
            City(
                id: "melitopol", name: "Melitopol",
                aliases: ["Melitopol'", "Melitopol’", "Melitopoli", "Meritopoli", "Мелітополь", "Мелитополь"],
                region: "UA-23", population: 148851, latitude: 46.8489, longitude: 35.3675, geonamesId: 701404),
            City(
                id: "berdiansk", name: "Berdiansk",
                aliases: ["Berdians'k", "Berdyansk", "Berdyans'k", "Berdyans’k", "Berdjansk", "Бердянськ", "Бердянск"],
                region: "UA-23", population: 107928, latitude: 46.7553, longitude: 36.7885, geonamesId: 712451),
        ])
    } catch {
        fatalError("fuzz gazetteer: \(error)")
    }
}
