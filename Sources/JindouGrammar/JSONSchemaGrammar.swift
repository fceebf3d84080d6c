import Foundation
import JindouTemplates

// Structured outputs: a JSON schema compiled to a byte-level matcher, so a token mask can
// say which tokens keep the output a valid prefix of a value of the schema. The features
// follow llama.cpp's json-schema-to-grammar and xgrammar (types, enum, const, properties,
// required, additionalProperties, items with bounds, $defs/$ref, anyOf/oneOf); anything
// else that constrains a value is refused by name rather than ignored.
//
// Whitespace is bounded: none except one optional space after `:` and `,`, so a schema with
// finitely many values always lets the model finish.

/// A schema keyword Jindou cannot enforce, or a malformed schema.
public struct JSONSchemaError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The compiled schema: nodes referring to each other by index (recursion through $ref).
public struct JSONSchemaGrammar: Sendable {
    indirect enum Node: Sendable, Hashable {
        case object(properties: [Property], required: Set<String>, additional: Int?)
        case array(items: Int, minItems: Int, maxItems: Int?)
        case string(minLength: Int, maxLength: Int?)
        case number(integer: Bool)
        /// JSON texts the value must be exactly (enum, const, true/false, null).
        case literals([[UInt8]])
        case anyOf([Int])
    }

    struct Property: Sendable, Hashable {
        var key: String
        /// The key as it appears between the quotes.
        var escaped: [UInt8]
        var node: Int
    }

    var nodes: [Node] = []
    let root: Int

    /// Any JSON value (`response_format: json_object` asks for an object of any values).
    public static func anyObject() -> JSONSchemaGrammar {
        var g = JSONSchemaGrammar(nodes: [], root: 0)
        let any = g.addAny()
        g.nodes.append(.object(properties: [], required: [], additional: any))
        return JSONSchemaGrammar(nodes: g.nodes, root: g.nodes.count - 1)
    }

    private init(nodes: [Node], root: Int) {
        self.nodes = nodes
        self.root = root
    }

    public init(schema: TemplateValue) throws {
        var compiler = Compiler(document: schema)
        root = try compiler.compile(schema, path: "#")
        nodes = compiler.grammar.nodes
    }

    /// Appends the node for any JSON value and returns its index.
    mutating func addAny() -> Int {
        let any = nodes.count
        nodes.append(.anyOf([]))  // placeholder, filled below
        nodes.append(.object(properties: [], required: [], additional: any))
        nodes.append(.array(items: any, minItems: 0, maxItems: nil))
        nodes.append(.string(minLength: 0, maxLength: nil))
        nodes.append(.number(integer: false))
        nodes.append(.literals([Array("true".utf8), Array("false".utf8), Array("null".utf8)]))
        nodes[any] = .anyOf([any + 1, any + 2, any + 3, any + 4, any + 5])
        return any
    }

    struct Compiler {
        let document: TemplateValue
        var grammar = JSONSchemaGrammar(nodes: [], root: 0)
        var references: [String: Int] = [:]
        var anyNode: Int?

        init(document: TemplateValue) { self.document = document }

        static let ignored: Set<String> = ["title", "description", "default", "examples", "$schema", "$id", "$comment",
                                           "deprecated", "readOnly", "writeOnly", "$defs", "definitions", "strict", "nullable"]
        static let known: Set<String> = ["type", "enum", "const", "properties", "required", "additionalProperties", "items",
                                         "minItems", "maxItems", "minLength", "maxLength", "anyOf", "oneOf", "$ref"]

        mutating func add(_ node: Node) -> Int {
            grammar.nodes.append(node)
            return grammar.nodes.count - 1
        }

        mutating func any() -> Int {
            if let anyNode { return anyNode }
            let a = grammar.addAny()
            anyNode = a
            return a
        }

        func literal(_ value: TemplateValue) throws -> [UInt8] {
            Array(try JSONText.encode(value, separators: (",", ":")).utf8)
        }

        func integer(_ o: TemplateObject, _ key: String, _ path: String) throws -> Int? {
            guard let v = o[key] else { return nil }
            guard case .int(let i) = v, i >= 0 else { throw JSONSchemaError("\(path): '\(key)' must be a non-negative integer") }
            return i
        }

        mutating func compile(_ schema: TemplateValue, path: String) throws -> Int {
            switch schema {
            case .bool(true): return any()
            case .bool(false): throw JSONSchemaError("\(path): the schema false allows no value")
            case .object(let o): return try compile(object: o, path: path)
            default: throw JSONSchemaError("\(path): a schema must be an object or a boolean")
            }
        }

        mutating func resolve(_ reference: String, path: String) throws -> Int {
            if let known = references[reference] { return known }
            guard reference.hasPrefix("#") else { throw JSONSchemaError("\(path): only local $ref (#/…) is supported, got '\(reference)'") }
            var target = document
            for part in reference.dropFirst().split(separator: "/") {
                let key = part.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
                guard case .object(let o) = target, let next = o[key] else {
                    throw JSONSchemaError("\(path): $ref '\(reference)' does not resolve")
                }
                target = next
            }
            // A placeholder first, so a recursive reference points back here.
            let slot = add(.anyOf([]))
            references[reference] = slot
            let body = try compile(target, path: reference)
            grammar.nodes[slot] = .anyOf([body])
            return slot
        }

        mutating func compile(object o: TemplateObject, path: String) throws -> Int {
            for key in o.keys where !Self.ignored.contains(key) && !Self.known.contains(key) {
                throw JSONSchemaError("\(path): the schema keyword '\(key)' is not supported by Jindou's constrained decoding")
            }
            if case .string(let reference)? = o["$ref"] {
                if o.keys.contains(where: { Self.known.contains($0) && $0 != "$ref" }) {
                    throw JSONSchemaError("\(path): '$ref' beside other constraints is not supported")
                }
                return try resolve(reference, path: path)
            }
            if let c = o["const"] { return add(.literals([try literal(c)])) }
            if let e = o["enum"] {
                guard case .array(let values) = e, !values.isEmpty else { throw JSONSchemaError("\(path): 'enum' must be a non-empty list") }
                return add(.literals(try values.map(literal)))
            }
            for key in ["anyOf", "oneOf"] {
                if let choices = o[key] {
                    guard case .array(let list) = choices, !list.isEmpty else { throw JSONSchemaError("\(path): '\(key)' must be a non-empty list") }
                    var alternatives: [Int] = []
                    for (i, choice) in list.enumerated() { alternatives.append(try compile(choice, path: "\(path)/\(key)/\(i)")) }
                    return add(.anyOf(alternatives))
                }
            }
            var types: [String] = []
            switch o["type"] {
            case nil:
                if o["properties"] != nil || o["additionalProperties"] != nil || o["required"] != nil { types = ["object"] }
                else if o["items"] != nil { types = ["array"] }
                else { return any() }
            case .string(let t)?: types = [t]
            case .array(let list)?:
                for case .string(let t) in list { types.append(t) }
            default: throw JSONSchemaError("\(path): 'type' must be a string or a list of strings")
            }
            if case .bool(true)? = o["nullable"], !types.contains("null") { types.append("null") }
            var alternatives: [Int] = []
            for type in types { alternatives.append(try compile(type: type, o, path: path)) }
            return alternatives.count == 1 ? alternatives[0] : add(.anyOf(alternatives))
        }

        mutating func compile(type: String, _ o: TemplateObject, path: String) throws -> Int {
            switch type {
            case "object":
                var properties: [Property] = []
                if let p = o["properties"] {
                    guard case .object(let props) = p else { throw JSONSchemaError("\(path): 'properties' must be an object") }
                    for (key, schema) in props.pairs {
                        let escaped = Array(try JSONText.encode(.string(key)).utf8.dropFirst().dropLast())
                        properties.append(Property(key: key, escaped: escaped, node: try compile(schema, path: "\(path)/properties/\(key)")))
                    }
                }
                var required = Set<String>()
                if let r = o["required"] {
                    guard case .array(let names) = r else { throw JSONSchemaError("\(path): 'required' must be a list") }
                    for case .string(let name) in names {
                        guard properties.contains(where: { $0.key == name }) else {
                            throw JSONSchemaError("\(path): required property '\(name)' is not in 'properties'")
                        }
                        required.insert(name)
                    }
                }
                var additional: Int?
                switch o["additionalProperties"] {
                case nil, .bool(true)?: additional = any()
                case .bool(false)?: additional = nil
                case let schema?: additional = try compile(schema, path: "\(path)/additionalProperties")
                }
                return add(.object(properties: properties, required: required, additional: additional))
            case "array":
                let items = try o["items"].map { try compile($0, path: "\(path)/items") } ?? any()
                let minItems = try integer(o, "minItems", path) ?? 0
                let maxItems = try integer(o, "maxItems", path)
                if let maxItems, maxItems < minItems { throw JSONSchemaError("\(path): maxItems < minItems") }
                return add(.array(items: items, minItems: minItems, maxItems: maxItems))
            case "string":
                let minLength = try integer(o, "minLength", path) ?? 0
                let maxLength = try integer(o, "maxLength", path)
                if let maxLength, maxLength < minLength { throw JSONSchemaError("\(path): maxLength < minLength") }
                return add(.string(minLength: minLength, maxLength: maxLength))
            case "integer": return add(.number(integer: true))
            case "number": return add(.number(integer: false))
            case "boolean": return add(.literals([Array("true".utf8), Array("false".utf8)]))
            case "null": return add(.literals([Array("null".utf8)]))
            default: throw JSONSchemaError("\(path): unknown type '\(type)'")
            }
        }
    }
}
