import Foundation

extension Gazetteer {
    /// The form in which names are compared: lowercased; diacritics stripped (é → e, ё → е) except
    /// the Cyrillic letters й and ї, which stay distinct from и and і; apostrophe variants
    /// (' ’ ‘ ʼ ` ´ and kin) removed; dash variants turned into "-"; whitespace trimmed and collapsed
    /// to one space. Hyphens and other punctuation are kept.
    public static func normalize(_ name: String) -> String {
        var out = ""
        out.reserveCapacity(name.utf8.count)
        var pendingSpace = false
        for character in name {
            if apostrophes.contains(character) { continue }
            if character.isWhitespace {
                pendingSpace = pendingSpace || !out.isEmpty
                continue
            }
            if pendingSpace {
                out.append(" ")
                pendingSpace = false
            }
            if dashes.contains(character) {
                out.append("-")
                continue
            }
            if character.isASCII {
                out.append(character.lowercased())
                continue
            }
            let lower = character.lowercased()
            if lower.count == 1, let single = lower.first, keptCyrillic.contains(single) {
                // Canonical equivalence: a decomposed и + U+0306 also lands here; store it precomposed.
                out.append(lower.precomposedStringWithCanonicalMapping)
            } else {
                out.append(lower.folding(options: [.caseInsensitive, .diacriticInsensitive, .widthInsensitive], locale: nil))
            }
        }
        return out
    }

    /// A canonical id for a city the gazetteer does not know yet: the name normalized, Cyrillic
    /// transliterated to Latin (the Ukrainian national system of 2010, or a plain Russian table when
    /// the name has letters only Russian uses: ы э ъ ё), remaining Latin letters folded to ASCII,
    /// every run of other characters turned into one "-", trimmed, at most 64 characters.
    /// nil when nothing is left.
    public static func slug(_ name: String) -> String? {
        slugHoldingAll(name)?.slug
    }

    /// ``slug(_:)``, and whether it holds all of `name`: a longer name is cut to the id's 64 characters, and two
    /// names that differ only past them would make the same id.
    public static func slugHoldingAll(_ name: String) -> (slug: String, holdsAll: Bool)? {
        guard var slug = fullSlug(name) else { return nil }
        guard slug.unicodeScalars.count > maxIdLength else { return (slug, true) }
        slug = String(String.UnicodeScalarView(slug.unicodeScalars.prefix(maxIdLength)))
        while slug.hasSuffix("-") { slug.removeLast() }
        return (slug, false)
    }

    /// ``slug(_:)`` before it is cut to ``maxIdLength``.
    private static func fullSlug(_ name: String) -> String? {
        let lowered = name.lowercased()
        let russian = lowered.contains(where: { russianOnly.contains($0) })
            && !lowered.contains(where: { ukrainianOnly.contains($0) })
        let normalized = normalize(name)

        var latin = ""
        var previousIsLetter = false
        for character in normalized {
            let isLetter = character.isLetter
            defer { previousIsLetter = isLetter }
            if let mapped = transliterate(character, russian: russian, wordInitial: !previousIsLetter) {
                latin += mapped
            } else {
                latin.append(character)
            }
        }

        var slug = ""
        var pendingDash = false
        for scalar in latin.unicodeScalars {
            if isLowerAlnum(scalar) {
                if pendingDash && !slug.isEmpty { slug.append("-") }
                pendingDash = false
                slug.unicodeScalars.append(scalar)
            } else if ("A"..."Z").contains(scalar) {
                if pendingDash && !slug.isEmpty { slug.append("-") }
                pendingDash = false
                slug.unicodeScalars.append(Unicode.Scalar(scalar.value + 32)!)
            } else {
                pendingDash = true
            }
        }
        return slug.isEmpty ? nil : slug
    }

    // MARK: - Tables

    /// Characters that are removed: apostrophes and the marks typed in their place.
    static let apostrophes: Set<Character> = [
        "'", "\u{2019}", "\u{2018}", "\u{201B}", "\u{02BC}", "\u{02BB}", "\u{02B9}", "`", "\u{00B4}",
        "\u{2032}", "\u{FF07}",
    ]

    /// Dash variants, all read as "-".
    static let dashes: Set<Character> = ["\u{2010}", "\u{2011}", "\u{2012}", "\u{2013}", "\u{2014}", "\u{2212}", "\u{FE63}", "\u{FF0D}"]

    /// Cyrillic letters that are letters of their own, not a base letter with a diacritic.
    static let keptCyrillic: Set<Character> = ["й", "ї", "ў"]

    static let ukrainianOnly: Set<Character> = ["і", "ї", "є", "ґ"]
    static let russianOnly: Set<Character> = ["ы", "э", "ъ", "ё"]

    /// Ukrainian national romanization (Cabinet of Ministers resolution 55, 2010), without its
    /// special case "зг" → "zgh". Letters with a second form use it at the start of a word.
    private static let ukrainian: [Character: (String, String?)] = [
        "а": ("a", nil), "б": ("b", nil), "в": ("v", nil), "г": ("h", nil), "ґ": ("g", nil),
        "д": ("d", nil), "е": ("e", nil), "є": ("ie", "ye"), "ж": ("zh", nil), "з": ("z", nil),
        "и": ("y", nil), "і": ("i", nil), "ї": ("i", "yi"), "й": ("i", "y"), "к": ("k", nil),
        "л": ("l", nil), "м": ("m", nil), "н": ("n", nil), "о": ("o", nil), "п": ("p", nil),
        "р": ("r", nil), "с": ("s", nil), "т": ("t", nil), "у": ("u", nil), "ф": ("f", nil),
        "х": ("kh", nil), "ц": ("ts", nil), "ч": ("ch", nil), "ш": ("sh", nil), "щ": ("shch", nil),
        "ь": ("", nil), "ю": ("iu", "yu"), "я": ("ia", "ya"),
        // Letters Ukrainian does not have, so that no Cyrillic letter is lost.
        "ы": ("y", nil), "э": ("e", nil), "ъ": ("", nil), "ё": ("e", nil), "ў": ("u", nil),
    ]

    /// A plain Russian romanization (BGN/PCGN without its diacritics).
    private static let russianTable: [Character: String] = [
        "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "zh", "з": "z",
        "и": "i", "й": "y", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o", "п": "p", "р": "r",
        "с": "s", "т": "t", "у": "u", "ф": "f", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh",
        "щ": "shch", "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "yu", "я": "ya",
    ]

    /// Latin letters that carry no decomposable diacritic, so folding leaves them alone.
    private static let latinExtra: [Character: String] = [
        "ø": "o", "ł": "l", "æ": "ae", "œ": "oe", "ß": "ss", "đ": "d", "ð": "d", "þ": "th",
        "ı": "i", "ħ": "h", "ŋ": "n",
    ]

    private static func transliterate(_ c: Character, russian: Bool, wordInitial: Bool) -> String? {
        if russian, let r = russianTable[c] { return r }
        if let (inner, initial) = ukrainian[c] { return wordInitial ? (initial ?? inner) : inner }
        return latinExtra[c]
    }
}
