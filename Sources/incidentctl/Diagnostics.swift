import Foundation

/// What incidentctl says on standard error about a command, made harmless to a terminal: the daemon's refusals and
/// notices carry text from the log (a city's name among the suggestions, a reason quoting a field), which anyone
/// with the reporter role wrote, and which must not move the cursor, retitle the terminal or reorder what the
/// analyst reads.
enum Diagnostics {
    /// Writes `incidentctl: text` as one line on standard error, `text` made ``harmless(_:)``.
    static func say(_ text: String) {
        FileHandle.standardError.write(Data("incidentctl: \(harmless(text))\n".utf8))
    }

    /// `text` with a line feed and carriage return shown as `\n` and `\r`, and every other control character (C0
    /// but tab, DEL, C1), line or paragraph separator, format character (bidirectional controls such as U+202E) or
    /// default-ignorable code point as `\u{202E}`, as tables show them (``Printer/visible(_:)``); backslashes stay as
    /// they are, since alone they do nothing to a terminal, and a message quoting JSON stays readable.
    static func harmless(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: { $0 != "\t" && Printer.needsEscape($0) }) else { return text }
        var out = ""
        out.unicodeScalars.reserveCapacity(text.unicodeScalars.count + 8)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\t": out.unicodeScalars.append(scalar)
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            default:
                if Printer.needsEscape(scalar) {
                    out += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out
    }
}
