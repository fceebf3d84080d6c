import Foundation
import JindouTemplates

/// The XML-style formats write every value as text; the tool's JSON schema says what it
/// was meant to be. Mirrors vLLM 0.33.0's `extract_types_from_schema`,
/// `coerce_to_schema_type` (vllm/tool_parsers/utils.py) and ParserEngine._coerce_value.
enum SchemaCoercion {
    static let aliases: [String: String] = [
        "str": "string", "text": "string", "varchar": "string", "char": "string", "enum": "string",
        "int": "integer", "int32": "integer", "int64": "integer", "uint": "integer", "uint32": "integer",
        "uint64": "integer", "long": "integer", "short": "integer", "unsigned": "integer",
        "float": "number", "float32": "number", "float64": "number", "double": "number",
        "bool": "boolean", "dict": "object", "arr": "array", "list": "array", "sequence": "array",
    ]

    /// Every type a schema allows (`type`, `enum` values, anyOf/oneOf/allOf); ["string"] when none.
    static func types(of schema: TemplateValue) -> [String] {
        guard case .object(let o) = schema else { return ["string"] }
        var types = Set<String>()
        switch o["type"] {
        case .string(let t)?: types.insert(t)
        case .array(let ts)?: for case .string(let t) in ts { types.insert(t) }
        default: break
        }
        if case .array(let values)? = o["enum"] {
            for value in values {
                switch value {
                case .none: types.insert("null")
                case .bool: types.insert("boolean")
                case .int: types.insert("integer")
                case .double: types.insert("number")
                case .string: types.insert("string")
                case .array: types.insert("array")
                case .object: types.insert("object")
                default: break
                }
            }
        }
        for field in ["anyOf", "oneOf", "allOf"] {
            if case .array(let choices)? = o[field] { for choice in choices { types.formUnion(self.types(of: choice)) } }
        }
        return types.isEmpty ? ["string"] : Array(types)
    }

    /// Coerces every value of `arguments` the schema types; true when any changed.
    static func coerce(_ arguments: inout TemplateObject, _ properties: TemplateObject) -> Bool {
        var changed = false
        for (key, value) in arguments.pairs {
            guard let schema = properties[key], case .object = schema else { continue }
            var v = value
            if coerceValue(&v, schema) {
                arguments[key] = v
                changed = true
            }
        }
        return changed
    }

    static func coerceValue(_ value: inout TemplateValue, _ schema: TemplateValue) -> Bool {
        switch value {
        case .string(let s):
            let coerced = coerceString(s, types(of: schema))
            if case .string(let same) = coerced, same == s { return false }
            value = coerced
            return true
        case .object(var nested):
            guard case .object(let o) = schema, case .object(let nestedProperties)? = o["properties"] else { return false }
            let changed = coerce(&nested, nestedProperties)
            value = .object(nested)
            return changed
        case .array(var items):
            guard case .object(let o) = schema, let itemSchema = o["items"], case .object = itemSchema else { return false }
            var changed = false
            for i in items.indices where coerceValue(&items[i], itemSchema) { changed = true }
            value = .array(items)
            return changed
        default:
            // A JSON value of another type: re-read its text as the schema's type.
            guard let text = try? JSONText.encode(value) else { return false }
            let coerced = coerceString(text, types(of: schema))
            if sameTypeAndValue(coerced, value) { return false }
            value = coerced
            return true
        }
    }

    private static func sameTypeAndValue(_ a: TemplateValue, _ b: TemplateValue) -> Bool {
        switch (a, b) {
        case (.none, .none): true
        case (.bool(let x), .bool(let y)): x == y
        case (.int(let x), .int(let y)): x == y
        case (.double(let x), .double(let y)): x == y
        default: false
        }
    }

    /// Python's `int(str)`: optional sign, digits, underscores between digits, surrounding whitespace.
    static func pythonInt(_ s: String) -> Int? {
        var t = pythonStrip(s)
        guard !t.isEmpty else { return nil }
        var negative = false
        if t.first == "+" || t.first == "-" { negative = t.first == "-"; t.removeFirst() }
        guard !t.isEmpty, t.first != "_", t.last != "_", !t.contains("__"), t.allSatisfy({ $0 == "_" || ("0"..."9").contains($0) }) else { return nil }
        guard let magnitude = Int(t.replacingOccurrences(of: "_", with: "")) else { return nil }
        return negative ? -magnitude : magnitude
    }

    /// Python's `float(str)` for finite decimal spellings (inf/nan are rejected by the caller anyway).
    static func pythonFloat(_ s: String) -> Double? {
        let t = pythonStrip(s).replacingOccurrences(of: "_", with: "")
        guard !t.isEmpty, let d = Double(t), d.isFinite else { return nil }
        let lower = t.lowercased()
        if lower.contains("inf") || lower.contains("nan") { return nil }
        return d
    }

    static func coerceString(_ value: String, _ schemaTypes: [String]) -> TemplateValue {
        let normalized = Set(schemaTypes.map { aliases[pythonStrip($0).lowercased()] ?? pythonStrip($0).lowercased() })
        for candidate in ["null", "integer", "number", "boolean", "object", "array", "string"] where normalized.contains(candidate) {
            switch candidate {
            case "null":
                if value.lowercased() == "null" { return .none }
            case "string":
                return .string(value)
            case "integer":
                if let i = pythonInt(value) { return .int(i) }
            case "number":
                if let i = pythonInt(value) { return .int(i) }
                if let d = pythonFloat(value) {
                    return d != d.rounded(.towardZero) || abs(d) >= 9.2e18 ? .double(d) : .int(Int(d))
                }
            case "boolean":
                let lower = pythonStrip(value.lowercased())
                if lower == "true" || lower == "1" { return .bool(true) }
                if lower == "false" || lower == "0" { return .bool(false) }
            default: // object, array
                if let parsed = try? JSONText.parse(Data(value.utf8)), isFinite(parsed) { return parsed }
            }
        }
        if let parsed = try? JSONText.parse(Data(value.utf8)), isFinite(parsed) { return parsed }
        return .string(value)
    }

    static func isFinite(_ value: TemplateValue) -> Bool {
        switch value {
        case .double(let d): d.isFinite
        case .array(let a): a.allSatisfy(isFinite)
        case .object(let o): o.pairs.allSatisfy { isFinite($0.1) }
        default: true
        }
    }
}
