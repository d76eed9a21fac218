import ArgumentParser

/// Which `--source` each of a command line's per-source details (`--source-url`, `--source-sha256`, …) was written
/// after: argument-parser keeps the values of each option in order but not where they stood among other options, so
/// this reads the raw arguments again. A detail goes with the nearest `--source` before it; one before any `--source`,
/// or a second of the same detail for one source, is bad usage naming it.
///
/// Options are recognised as argument-parser recognises them: `--name value` or `--name=value`; the value of an
/// option in `valueAlwaysTaken` is skipped even when it looks like an option (`--lat -33`); nothing after `--` is an
/// option. The occurrences found are checked against what argument-parser parsed (``check(parsed:)``), so that a
/// command line read two ways is refused rather than attached wrongly.
struct SourceDetailPlacement: Equatable {
    /// One `--source` and the details written after it, before the next.
    struct Source: Equatable {
        /// The name given to `--source`.
        var name: String
        /// Each detail option written for this source (`--source-url`) with its value as written.
        var details: [String: String]
    }

    /// The sources, in the order written.
    var sources: [Source]
    /// Every value of each detail option and of `--source`, in the order written.
    private(set) var values: [String: [String]]

    static let sourceOption = "--source"

    /// The options of `report`, `observe` and `outcome` whose value argument-parser takes even when it looks like an
    /// option (`parsing: .unconditional`, as `--lat -33`): a reading must skip it too.
    static let writeCommandsValueAlwaysTaken: Set<String> = [
        "--participants", "--lat", "--lon", "--killed", "--injured", "--detained", "--expected-version", "--timeout",
        // Free text, which may start with a dash: "- residents fled", "-=Melitopol News=-".
        "--city", "--location", "--description", "--target", "--tag", "--by", "--verified-by", "--method", "--note",
    ]

    /// Reads `arguments` (without the program's name), where `detailOptions` are the options that describe one source.
    init(arguments: [String], detailOptions: Set<String>, valueAlwaysTaken: Set<String> = []) throws(ValidationError) {
        sources = []
        values = [:]
        var i = arguments.startIndex
        while i < arguments.endIndex {
            let argument = arguments[i]
            i += 1
            if argument == "--" { break }
            guard argument.hasPrefix("--") else { continue }
            let name: String
            var value: String?
            if let equals = argument.firstIndex(of: "=") {
                name = String(argument[..<equals])
                value = String(argument[argument.index(after: equals)...])
            } else {
                name = argument
            }
            let isSourceOption = name == Self.sourceOption || detailOptions.contains(name)
            if value == nil, isSourceOption || valueAlwaysTaken.contains(name), i < arguments.endIndex {
                value = arguments[i]
                i += 1
            }
            guard isSourceOption, let value else { continue }
            values[name, default: []].append(value)
            if name == Self.sourceOption {
                sources.append(Source(name: value, details: [:]))
                continue
            }
            guard let last = sources.indices.last else {
                throw ValidationError(
                    "\(name) \(Self.quoted(value)) comes before any --source: write each source's details after the --source NAME they go with, as in --source \"local Telegram channel\" \(name) …")
            }
            if let earlier = sources[last].details[name] {
                throw ValidationError(
                    "\(name) given twice for --source \(Self.quoted(sources[last].name)) (\(Self.quoted(earlier)) and \(Self.quoted(value))): each detail goes with the --source written before it, so give one \(name) after each --source NAME")
            }
            sources[last].details[name] = value
        }
    }

    /// Refuses a reading that does not find, for `--source` and each detail option, the values argument-parser parsed
    /// for it (`parsed`, option name to values in order): an option whose value the reading took for an option of
    /// its own, or the other way round.
    func check(parsed: [String: [String]]) throws(ValidationError) {
        for (name, given) in parsed where (values[name] ?? []) != given {
            throw ValidationError(
                "cannot tell which --source each \(name) goes with from this command line: write it as \(name)=VALUE right after the --source NAME it goes with")
        }
    }

    /// `text` in single quotes, cut at 60 characters, for a message.
    private static func quoted(_ text: String) -> String {
        "'" + (text.count > 60 ? text.prefix(59) + "…" : text) + "'"
    }
}
