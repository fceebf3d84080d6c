import Foundation

/// A value inside a chat template, with Python/Jinja semantics (what transformers'
/// jinja2 environment sees): ordered dicts, ints distinct from floats, `undefined`.
public indirect enum TemplateValue: Sendable {
    /// A missing variable, attribute or item (prints as "", is false, and fails on most operations).
    case undefined(String)
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([TemplateValue])
    case object(TemplateObject)
    /// `namespace(...)`: the one mutable value (attributes assignable with `set ns.x = …`).
    case namespace(Namespace)
    case macro(Macro)
    /// A built-in function or a method bound to its receiver.
    case function(Function)

    public static func string(_ s: Substring) -> TemplateValue { .string(String(s)) }
}

/// An insertion-ordered string-keyed dictionary (Python dicts keep insertion order and
/// `tojson` prints keys in it).
public struct TemplateObject: Sendable {
    public private(set) var keys: [String] = []
    public private(set) var values: [String: TemplateValue] = [:]

    public init() {}

    public init(_ pairs: [(String, TemplateValue)]) {
        for (k, v) in pairs { self[k] = v }
    }

    public subscript(key: String) -> TemplateValue? {
        get { values[key] }
        set {
            if values[key] == nil, newValue != nil { keys.append(key) }
            if newValue == nil { keys.removeAll { $0 == key } }
            values[key] = newValue
        }
    }

    public var pairs: [(String, TemplateValue)] { keys.map { ($0, values[$0]!) } }
    public var count: Int { keys.count }
}

/// `namespace()` objects: reference semantics, so sets inside loops are visible outside.
///
/// `@unchecked Sendable`: a render runs on one thread; namespaces never outlive it.
public final class Namespace: @unchecked Sendable {
    var attributes: TemplateObject
    init(_ attributes: TemplateObject) { self.attributes = attributes }
}

/// A `{% macro %}`.
public struct Macro: Sendable {
    let name: String
    let parameters: [(String, Expression?)]
    let body: [Node]
}

/// A callable: a global function or a method bound to a value.
public struct Function: Sendable {
    let name: String
    let call: @Sendable ([TemplateValue], [(String, TemplateValue)]) throws -> TemplateValue
}

/// Why a template could not render: the message says where and what (like jinja2's
/// TemplateSyntaxError, UndefinedError, TypeError or `raise_exception`).
public struct TemplateError: Error, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable { case syntax, undefined, type, raised }
    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { "chat template \(kind.rawValue) error: \(message)" }
}

extension TemplateValue {
    var isUndefined: Bool { if case .undefined = self { return true } else { return false } }

    /// Python truthiness.
    public var truthy: Bool {
        switch self {
        case .undefined, .none: false
        case .bool(let b): b
        case .int(let i): i != 0
        case .double(let d): d != 0
        case .string(let s): !s.isEmpty
        case .array(let a): !a.isEmpty
        case .object(let o): o.count > 0
        case .namespace, .macro, .function: true
        }
    }

    var typeName: String {
        switch self {
        case .undefined: "Undefined"
        case .none: "NoneType"
        case .bool: "bool"
        case .int: "int"
        case .double: "float"
        case .string: "str"
        case .array: "list"
        case .object: "dict"
        case .namespace: "Namespace"
        case .macro: "Macro"
        case .function: "function"
        }
    }

    /// `str(x)`: what `{{ x }}` prints.
    public var text: String {
        switch self {
        case .undefined: ""
        case .string(let s): s
        default: repr
        }
    }

    /// Python `repr(x)` (used by str() of containers).
    var repr: String {
        switch self {
        case .undefined: ""
        case .none: "None"
        case .bool(let b): b ? "True" : "False"
        case .int(let i): String(i)
        case .double(let d): pythonFloat(d)
        case .string(let s): pythonStringRepr(s)
        case .array(let a): "[" + a.map(\.repr).joined(separator: ", ") + "]"
        case .object(let o): "{" + o.pairs.map { pythonStringRepr($0.0) + ": " + $0.1.repr }.joined(separator: ", ") + "}"
        case .namespace(let n): "<Namespace " + TemplateValue.object(n.attributes).repr + ">"
        case .macro(let m): "<Macro '\(m.name)'>"
        case .function(let f): "<function \(f.name)>"
        }
    }

    /// Python `==`.
    func equals(_ other: TemplateValue) -> Bool {
        switch (self, other) {
        case (.undefined, .undefined), (.none, .none): true
        case (.bool(let a), .bool(let b)): a == b
        case (.int(let a), .int(let b)): a == b
        case (.int(let a), .double(let b)), (.double(let b), .int(let a)): Double(a) == b
        case (.double(let a), .double(let b)): a == b
        case (.bool(let a), .int(let b)), (.int(let b), .bool(let a)): (a ? 1 : 0) == b
        case (.string(let a), .string(let b)): a == b
        case (.array(let a), .array(let b)): a.count == b.count && zip(a, b).allSatisfy { $0.equals($1) }
        case (.object(let a), .object(let b)):
            a.count == b.count && a.keys.allSatisfy { k in b[k].map { a[k]!.equals($0) } ?? false }
        case (.namespace(let a), .namespace(let b)): a === b
        default: false
        }
    }
}

/// Python's float repr: shortest round-trip digits, with ".0" for integral values.
func pythonFloat(_ d: Double) -> String {
    if d.isNaN { return "nan" }
    if d.isInfinite { return d > 0 ? "inf" : "-inf" }
    var s = "\(d)"
    if s.contains("e") {
        // Swift writes 1e-05 like Python; Python writes 1e+16 where Swift writes 1e+16 too.
        return s
    }
    if !s.contains(".") { s += ".0" }
    return s
}

/// Python's repr of a str.
func pythonStringRepr(_ s: String) -> String {
    let quote: Character = s.contains("'") && !s.contains("\"") ? "\"" : "'"
    var out = String(quote)
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if Character(scalar) == quote { out += "\\" + String(quote) }
            else if scalar.value < 0x20 || scalar.value == 0x7F { out += String(format: "\\x%02x", scalar.value) }
            else { out.unicodeScalars.append(scalar) }
        }
    }
    out.append(quote)
    return out
}
