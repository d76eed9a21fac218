import ArgumentParser
import Foundation
import IncidentDomain

// The domain's vocabularies as option values: a value outside them is bad usage (exit 2) before anything is sent,
// with argument-parser's message naming the option, the value and the values allowed, and `--help` lists them.
extension EventType: ExpressibleByArgument {}
extension IncidentKind: ExpressibleByArgument {}
extension ResponseKind: ExpressibleByArgument {}
extension OutcomeStatus: ExpressibleByArgument {}
extension Verification: ExpressibleByArgument {}
extension Precision: ExpressibleByArgument {}

extension CaseIterable where Self: RawRepresentable, RawValue == String {
    /// Every value, as the help texts list them: "a, b, c".
    static var valueList: String { allCases.map(\.rawValue).joined(separator: ", ") }

    /// Every value, one to a line, as argument-parser lists the values of a refused one.
    static var bulletedValues: String { allCases.map { "  - \($0.rawValue)" }.joined(separator: "\n") }

    /// The value named `name`; for another name, a refusal that names it and the values allowed, in
    /// argument-parser's words, for `what` (such as "a kind").
    static func named(_ name: some StringProtocol, as what: String) throws -> Self {
        guard let value = Self(rawValue: String(name)) else {
            throw ValidationError("'\(name)' is not \(what). Please provide one of the following:\n\(bulletedValues)")
        }
        return value
    }
}

extension ResponseKind {
    /// The value of `--response`: one or more responses, comma-separated, each checked.
    static func list(_ text: String) throws -> [ResponseKind] {
        let names = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !names.isEmpty else {
            throw ValidationError("no response given. Please provide one or more of the following, comma-separated:\n\(bulletedValues)")
        }
        return try names.map { name in
            guard let kind = ResponseKind(rawValue: name) else {
                throw ValidationError(
                    "'\(name)' is not a response. Please provide one or more of the following, comma-separated:\n\(bulletedValues)")
            }
            return kind
        }
    }
}
