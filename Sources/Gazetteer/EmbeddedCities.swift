// The gazetteer compiled into the binaries, so the daemon runs without a config file.
// A verbatim copy of config/cities.toml: GazetteerTests checks that the two parse to equal
// gazetteers, so edit both together.

extension Gazetteer {
    /// The text of the compiled-in gazetteer (a copy of `config/cities.toml`).
    public static let embeddedTOML: String = #"""
# incidentd gazetteer: the canonical cities that incident reports are resolved to.
#
# Format: one [[city]] table per city, with these keys:
#   id          canonical id, a lowercase slug [a-z0-9][a-z0-9-]*, at most 64 characters;
#               stored with every report as `cityId`, so NEVER rename an id once it is in use
#   name        English display name (official Ukrainian romanisation, KMU 2010)
#   aliases     every spelling users type: transliterations, the spellings of our sources,
#               Ukrainian and Russian Cyrillic
#   region      ISO 3166-2 code of the oblast (optional)
#   population  pre-war population (optional); the source is given in a comment
#   lat, lon    WGS 84 coordinates of the city centre, decimal degrees (optional, both or neither)
#   geonamesId  GeoNames id (optional; only where it has been checked)
# Unknown keys are refused, so a typo cannot silently drop a field.
#
# Matching: the id, the name and every alias are looked up after normalisation, which
# ignores case, apostrophe variants (' ’ ‘ ʼ ` ´), diacritics (é = e) and repeated or
# surrounding spaces; hyphens are kept. Cyrillic й and ї are kept distinct from и and і,
# and ё matches е. So "KUPYANSK", "Kup`yansk" and "Kup’yansk" all find Kupiansk, and an
# alias needs to be listed only once per spelling, not once per apostrophe or case variant
# (the variants below are listed anyway because they are what our sources print).
# One normalised spelling may belong to one city only: the gazetteer refuses to load otherwise.
# An unknown name is refused with suggestions: the known names closest by edit distance.

[[city]]
id = "kupiansk"
name = "Kupiansk"
aliases = [
  "Kupiansk", "Kupians'k", "Kupians’k",
  "Kupyansk", "Kup'yansk", "Kup’yansk", "Kup'yans'k", "Kup’yans’k", # article, GeoNames, common English
  "Kupjansk", "Kupiańsk",                                             # German, Polish
  "Куп'янськ", "Купʼянськ", "Куп’янськ",                             # Ukrainian
  "Купянск",                                                          # Russian
]
region = "UA-63"          # Kharkiv oblast
# State Statistics Service of Ukraine, estimate as of 1 January 2022 (pre-war): 26,262,
# as quoted in Wikipedia's city article.
# The article says "30,000 inhabitants".
population = 26262
lat = 49.7106
lon = 37.6156
# geonamesId omitted: not checked.

[[city]]
id = "melitopol"
name = "Melitopol"
aliases = [
  "Melitopol", "Melitopol'", "Melitopol’",
  "Melitopoli", "Meritopoli",            # the article's spellings (the second is a typo in the source)
  "Мелітополь",                          # Ukrainian
  "Мелитополь",                          # Russian
]
region = "UA-23"          # Zaporizhzhia oblast
# State Statistics Service of Ukraine, estimate as of 1 January 2022 (pre-war): 148,851,
# as quoted in Wikipedia's city article.
# The article says "about 160,000" (2001 census: 160,657).
population = 148851
lat = 46.8489
lon = 35.3675
geonamesId = 701404       # GeoNames "Melitopol'"

[[city]]
id = "berdiansk"
name = "Berdiansk"
aliases = [
  "Berdiansk", "Berdians'k", "Berdians’k",
  "Berdyansk", "Berdyans'k", "Berdyans’k",  # article, GeoNames, common English
  "Berdjansk",                              # German
  "Бердянськ",                              # Ukrainian
  "Бердянск",                               # Russian
]
region = "UA-23"          # Zaporizhzhia oblast
# State Statistics Service of Ukraine, estimate as of 1 January 2022 (pre-war): 107,928,
# as quoted in Wikipedia's city article.
# The article says "110,000 inhabitants".
population = 107928
lat = 46.7553
lon = 36.7885
geonamesId = 712451       # GeoNames "Berdyans'k"
"""#

    /// The compiled-in gazetteer: the cities of `config/cities.toml`.
    public static let embedded: Gazetteer = {
        do {
            return try Gazetteer(tomlText: embeddedTOML)
        } catch {
            fatalError("the embedded gazetteer is invalid: \(error)")
        }
    }()
}
