import Foundation

/// JSON in and out with Python's conventions, for chat templates: parsing keeps key order
/// and the int/float distinction (messages and tools come from request bodies); encoding is
/// `json.dumps` (separators ", " and ": ", `ensure_ascii`, `indent`, `sort_keys`), which is
/// what transformers' `tojson` filter calls.
public enum JSONText {
    // MARK: Encoding

    public static func encode(_ value: TemplateValue, ensureASCII: Bool = false, indent: Int? = nil,
                              separators: (String, String)? = nil, sortKeys: Bool = false) throws -> String {
        var out = ""
        let (item, key) = separators ?? (indent == nil ? (", ", ": ") : (",", ": "))
        try write(value, into: &out, ensureASCII: ensureASCII, indent: indent, level: 0, item: item, key: key, sortKeys: sortKeys)
        return out
    }

    static func write(_ value: TemplateValue, into out: inout String, ensureASCII: Bool, indent: Int?, level: Int,
                      item: String, key: String, sortKeys: Bool) throws {
        func newline(_ depth: Int) {
            if let indent { out += "\n" + String(repeating: " ", count: indent * depth) }
        }
        switch value {
        case .none: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d):
            if d.isNaN { out += "NaN" } else if d.isInfinite { out += d > 0 ? "Infinity" : "-Infinity" } else { out += pythonFloat(d) }
        case .string(let s): out += quote(s, ensureASCII: ensureASCII)
        case .array(let a):
            if a.isEmpty { out += "[]"; return }
            out += "["
            for (i, element) in a.enumerated() {
                if i > 0 { out += item }
                newline(level + 1)
                try write(element, into: &out, ensureASCII: ensureASCII, indent: indent, level: level + 1, item: item, key: key, sortKeys: sortKeys)
            }
            newline(level)
            out += "]"
        case .object(let o):
            if o.count == 0 { out += "{}"; return }
            out += "{"
            let keys = sortKeys ? o.keys.sorted() : o.keys
            for (i, k) in keys.enumerated() {
                if i > 0 { out += item }
                newline(level + 1)
                out += quote(k, ensureASCII: ensureASCII) + key
                try write(o[k]!, into: &out, ensureASCII: ensureASCII, indent: indent, level: level + 1, item: item, key: key, sortKeys: sortKeys)
            }
            newline(level)
            out += "}"
        case .namespace(let n):
            try write(.object(n.attributes), into: &out, ensureASCII: ensureASCII, indent: indent, level: level, item: item, key: key, sortKeys: sortKeys)
        case .undefined(let what):
            throw TemplateError(.type, "Object of type Undefined is not JSON serializable ('\(what)')")
        case .macro, .function:
            throw TemplateError(.type, "Object of type \(value.typeName) is not JSON serializable")
        }
    }

    static func quote(_ s: String, ensureASCII: Bool) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if scalar.value < 0x20 {
                    out += String(format: "\\u%04x", scalar.value)
                } else if ensureASCII && scalar.value > 0x7E {
                    if scalar.value > 0xFFFF {
                        let v = scalar.value - 0x10000
                        out += String(format: "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF))
                    } else {
                        out += String(format: "\\u%04x", scalar.value)
                    }
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    // MARK: Parsing

    public struct ParseError: Error, CustomStringConvertible {
        public let offset: Int
        public let reason: String
        public var description: String { "invalid JSON at byte \(offset): \(reason)" }
    }

    /// Parses JSON keeping object key order and ints apart from floats.
    public static func parse(_ data: Data) throws -> TemplateValue {
        var parser = JSONParser(bytes: [UInt8](data))
        let value = try parser.value()
        parser.skipWhitespace()
        guard parser.position == parser.bytes.count else { throw ParseError(offset: parser.position, reason: "trailing characters") }
        return value
    }
}

struct JSONParser {
    let bytes: [UInt8]
    var position = 0
    var depth = 0

    init(bytes: [UInt8]) { self.bytes = bytes }

    mutating func skipWhitespace() {
        while position < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[position]) { position += 1 }
    }

    func fail(_ reason: String) -> JSONText.ParseError { JSONText.ParseError(offset: position, reason: reason) }

    mutating func value() throws -> TemplateValue {
        skipWhitespace()
        guard position < bytes.count else { throw fail("unexpected end") }
        depth += 1
        defer { depth -= 1 }
        guard depth < 512 else { throw fail("nested too deeply") }
        switch bytes[position] {
        case UInt8(ascii: "{"):
            position += 1
            var object = TemplateObject()
            skipWhitespace()
            if position < bytes.count, bytes[position] == UInt8(ascii: "}") { position += 1; return .object(object) }
            while true {
                skipWhitespace()
                guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else { throw fail("expected a key") }
                let key = try string()
                skipWhitespace()
                guard position < bytes.count, bytes[position] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                position += 1
                object[key] = try value()
                skipWhitespace()
                guard position < bytes.count else { throw fail("unterminated object") }
                if bytes[position] == UInt8(ascii: ",") { position += 1; continue }
                if bytes[position] == UInt8(ascii: "}") { position += 1; return .object(object) }
                throw fail("expected ',' or '}'")
            }
        case UInt8(ascii: "["):
            position += 1
            var array: [TemplateValue] = []
            skipWhitespace()
            if position < bytes.count, bytes[position] == UInt8(ascii: "]") { position += 1; return .array(array) }
            while true {
                array.append(try value())
                skipWhitespace()
                guard position < bytes.count else { throw fail("unterminated array") }
                if bytes[position] == UInt8(ascii: ",") { position += 1; continue }
                if bytes[position] == UInt8(ascii: "]") { position += 1; return .array(array) }
                throw fail("expected ',' or ']'")
            }
        case UInt8(ascii: "\""):
            return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .none
        default:
            return try number()
        }
    }

    mutating func literal(_ word: String) throws {
        let w = Array(word.utf8)
        guard position + w.count <= bytes.count, Array(bytes[position..<(position + w.count)]) == w else { throw fail("invalid literal") }
        position += w.count
    }

    mutating func number() throws -> TemplateValue {
        let start = position
        var isFloat = false
        while position < bytes.count {
            let c = bytes[position]
            if (c >= 0x30 && c <= 0x39) || c == UInt8(ascii: "-") || c == UInt8(ascii: "+") { position += 1 }
            else if c == UInt8(ascii: ".") || c == UInt8(ascii: "e") || c == UInt8(ascii: "E") { isFloat = true; position += 1 }
            else { break }
        }
        let text = String(decoding: bytes[start..<position], as: UTF8.self)
        if !isFloat, let i = Int(text) { return .int(i) }
        guard let d = Double(text), !text.isEmpty else { throw JSONText.ParseError(offset: start, reason: "invalid number '\(text)'") }
        return .double(d)
    }

    mutating func string() throws -> String {
        position += 1  // opening quote
        var out: [UInt8] = []
        while position < bytes.count {
            let c = bytes[position]
            position += 1
            if c == UInt8(ascii: "\"") { return String(decoding: out, as: UTF8.self) }
            if c < 0x20 { throw fail("control character in string") }
            guard c == UInt8(ascii: "\\") else { out.append(c); continue }
            guard position < bytes.count else { break }
            let e = bytes[position]
            position += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var code = try hex4()
                if (0xD800..<0xDC00).contains(code), position + 6 <= bytes.count, bytes[position] == UInt8(ascii: "\\"),
                   bytes[position + 1] == UInt8(ascii: "u") {
                    position += 2
                    let low = try hex4()
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                }
                let scalar = Unicode.Scalar(code) ?? "\u{FFFD}"
                out += Array(String(scalar).utf8)
            default: throw fail("invalid escape")
            }
        }
        throw fail("unterminated string")
    }

    mutating func hex4() throws -> UInt32 {
        guard position + 4 <= bytes.count, let v = UInt32(String(decoding: bytes[position..<(position + 4)], as: UTF8.self), radix: 16) else {
            throw fail("invalid \\u escape")
        }
        position += 4
        return v
    }
}
