import Foundation

/// Global functions, filters, tests, operators and methods, with Python semantics.
enum Builtins {
    static let globals: [String: TemplateValue] = [
        "namespace": .function(Function(name: "namespace") { args, kwargs in
            var attributes = TemplateObject()
            if case .object(let o)? = args.first { attributes = o }
            for (k, v) in kwargs { attributes[k] = v }
            return .namespace(Namespace(attributes))
        }),
        "dict": .function(Function(name: "dict") { args, kwargs in
            var object = TemplateObject()
            if case .object(let o)? = args.first { object = o }
            for (k, v) in kwargs { object[k] = v }
            return .object(object)
        }),
        "range": .function(Function(name: "range") { args, _ in
            let ints = try args.map { v -> Int in
                guard case .int(let i) = v else { throw TemplateError(.type, "range() arguments must be integers") }
                return i
            }
            let (start, stop, step) = ints.count == 1 ? (0, ints[0], 1) : ints.count == 2 ? (ints[0], ints[1], 1) : (ints[0], ints[1], ints[2])
            guard step != 0 else { throw TemplateError(.type, "range() step must not be zero") }
            return .array(Array(stride(from: start, to: stop, by: step)).map { .int($0) })
        }),
        "raise_exception": .function(Function(name: "raise_exception") { args, _ in
            throw TemplateError(.raised, args.first?.text ?? "raise_exception")
        }),
        "strftime_now": .function(Function(name: "strftime_now") { args, _ in
            var now = time(nil)
            var parts = tm()
            localtime_r(&now, &parts)
            var buffer = [Int8](repeating: 0, count: 256)
            let count = strftime(&buffer, buffer.count, args.first?.text ?? "%Y-%m-%d", &parts)
            return .string(String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }),
    ]

    // MARK: Operators

    static func binary(_ op: String, _ a: TemplateValue, _ b: TemplateValue) throws -> TemplateValue {
        if a.isUndefined || b.isUndefined, !["==", "!=", "in", "not in", "~"].contains(op) {
            let name: String = { if case .undefined(let n) = a { return n }; if case .undefined(let n) = b { return n }; return "" }()
            throw TemplateError(.undefined, "'\(name)' is undefined (operand of \(op))")
        }
        switch op {
        case "==": return .bool(a.equals(b))
        case "!=": return .bool(!a.equals(b))
        case "in": return .bool(try contains(b, a))
        case "not in": return .bool(!(try contains(b, a)))
        case "~": return .string(a.text + b.text)
        case "<", ">", "<=", ">=":
            let order = try compare(a, b)
            switch op {
            case "<": return .bool(order < 0)
            case ">": return .bool(order > 0)
            case "<=": return .bool(order <= 0)
            default: return .bool(order >= 0)
            }
        default:
            break
        }
        switch (a, b) {
        case (.int(let x), .int(let y)):
            switch op {
            case "+": return .int(x + y)
            case "-": return .int(x - y)
            case "*": return .int(x * y)
            case "/":
                guard y != 0 else { throw TemplateError(.type, "division by zero") }
                return .double(Double(x) / Double(y))
            case "//":
                guard y != 0 else { throw TemplateError(.type, "integer division by zero") }
                return .int(Int((Double(x) / Double(y)).rounded(.down)))
            case "%":
                guard y != 0 else { throw TemplateError(.type, "modulo by zero") }
                let r = x % y
                return .int(r != 0 && (r < 0) != (y < 0) ? r + y : r)
            case "**":
                let power = pow(Double(x), Double(y))
                guard y >= 0 else { return .double(power) }
                guard let exact = Int(exactly: power.rounded()) else { throw TemplateError(.type, "\(x) ** \(y) does not fit an integer") }
                return .int(exact)
            default: break
            }
        case (.int, .double), (.double, .int), (.double, .double):
            let x = number(a)!, y = number(b)!
            switch op {
            case "+": return .double(x + y)
            case "-": return .double(x - y)
            case "*": return .double(x * y)
            case "/": return .double(x / y)
            case "//": return .double((x / y).rounded(.down))
            case "%": return .double(x - y * (x / y).rounded(.down))
            case "**": return .double(pow(x, y))
            default: break
            }
        case (.string(let x), .string(let y)) where op == "+":
            return .string(x + y)
        case (.array(let x), .array(let y)) where op == "+":
            return .array(x + y)
        case (.string(let s), .int(let n)) where op == "*", (.int(let n), .string(let s)) where op == "*":
            return .string(String(repeating: s, count: max(0, n)))
        default:
            break
        }
        throw TemplateError(.type, "unsupported operand types for \(op): '\(a.typeName)' and '\(b.typeName)'")
    }

    static func number(_ v: TemplateValue) -> Double? {
        switch v {
        case .int(let i): Double(i)
        case .double(let d): d
        case .bool(let b): b ? 1 : 0
        default: nil
        }
    }

    static func compare(_ a: TemplateValue, _ b: TemplateValue) throws -> Int {
        if let x = number(a), let y = number(b) { return x < y ? -1 : x > y ? 1 : 0 }
        if case .string(let x) = a, case .string(let y) = b {
            let xs = Array(x.unicodeScalars.map(\.value)), ys = Array(y.unicodeScalars.map(\.value))
            return xs.lexicographicallyPrecedes(ys) ? -1 : xs == ys ? 0 : 1
        }
        throw TemplateError(.type, "'<' not supported between '\(a.typeName)' and '\(b.typeName)'")
    }

    static func contains(_ container: TemplateValue, _ item: TemplateValue) throws -> Bool {
        switch container {
        case .string(let s):
            guard case .string(let needle) = item else { throw TemplateError(.type, "'in <string>' requires string as left operand") }
            return needle.isEmpty || s.contains(needle)
        case .array(let a): return a.contains { $0.equals(item) }
        case .object(let o): return o[item.text] != nil && { if case .string = item { return true } else { return false } }()
        case .namespace(let n): return n.attributes[item.text] != nil
        case .undefined: return false
        default: throw TemplateError(.type, "argument of type '\(container.typeName)' is not iterable")
        }
    }

    // MARK: Tests

    static func test(_ name: String, _ value: TemplateValue, _ args: [TemplateValue]) throws -> Bool {
        switch name {
        case "defined": return !value.isUndefined
        case "undefined": return value.isUndefined
        case "none": if case .none = value { return true } else { return false }
        case "string": if case .string = value { return true } else { return false }
        case "number": if case .int = value { return true }; if case .double = value { return true }; return false
        case "integer": if case .int = value { return true } else { return false }
        case "float": if case .double = value { return true } else { return false }
        case "boolean": if case .bool = value { return true } else { return false }
        case "true": if case .bool(true) = value { return true } else { return false }
        case "false": if case .bool(false) = value { return true } else { return false }
        case "mapping": if case .object = value { return true }; if case .namespace = value { return true }; return false
        case "sequence": if case .array = value { return true }; if case .string = value { return true }; if case .object = value { return true }; return false
        case "iterable":
            switch value {
            case .array, .string, .object: return true
            default: return false
            }
        case "callable": if case .function = value { return true }; if case .macro = value { return true }; return false
        case "odd", "even":
            guard case .int(let i) = value else { throw TemplateError(.type, "\(name) test needs an integer") }
            return (i % 2 != 0) == (name == "odd")
        case "divisibleby":
            guard case .int(let i) = value, case .int(let d)? = args.first, d != 0 else { throw TemplateError(.type, "divisibleby needs integers") }
            return i % d == 0
        case "eq", "equalto", "sameas": return args.first.map { value.equals($0) } ?? false
        case "ne": return !(args.first.map { value.equals($0) } ?? false)
        case "lt", "lessthan": return try compare(value, args.first ?? .none) < 0
        case "gt", "greaterthan": return try compare(value, args.first ?? .none) > 0
        case "le": return try compare(value, args.first ?? .none) <= 0
        case "ge": return try compare(value, args.first ?? .none) >= 0
        case "in": return try contains(args.first ?? .none, value)
        case "lower": if case .string(let s) = value { return s == s.lowercased() } else { return false }
        case "upper": if case .string(let s) = value { return s == s.uppercased() } else { return false }
        default: throw TemplateError(.syntax, "no test named '\(name)'")
        }
    }

    // MARK: Filters

    static func filter(_ name: String, _ value: TemplateValue, _ args: [TemplateValue], _ kwargs: [(String, TemplateValue)]) throws -> TemplateValue {
        func argument(_ key: String, _ position: Int) -> TemplateValue? {
            kwargs.first { $0.0 == key }?.1 ?? (position < args.count ? args[position] : nil)
        }
        switch name {
        case "length", "count":
            switch value {
            case .string(let s): return .int(s.count)
            case .array(let a): return .int(a.count)
            case .object(let o): return .int(o.count)
            case .undefined: return .int(0)
            default: throw TemplateError(.type, "object of type '\(value.typeName)' has no len()")
            }
        case "tojson":
            let ensureASCII = argument("ensure_ascii", 0)?.truthy ?? false
            var indent: Int?
            if case .int(let i)? = argument("indent", 1) { indent = i }
            var separators: (String, String)?
            if case .array(let s)? = argument("separators", 2), s.count == 2 { separators = (s[0].text, s[1].text) }
            let sortKeys = argument("sort_keys", 3)?.truthy ?? false
            return .string(try JSONText.encode(value, ensureASCII: ensureASCII, indent: indent, separators: separators, sortKeys: sortKeys))
        case "string": return .string(value.text)
        case "safe", "e", "escape", "forceescape": return name == "safe" ? value : .string(htmlEscape(value.text))
        case "lower": return .string(value.text.lowercased())
        case "upper": return .string(value.text.uppercased())
        case "trim": return .string(value.text.trimmingCharacters(in: .whitespacesAndNewlines))
        case "title": return .string(value.text.capitalized)
        case "capitalize":
            let t = value.text
            return .string(t.prefix(1).uppercased() + t.dropFirst().lowercased())
        case "default", "d":
            let fallback = argument("default_value", 0) ?? .string("")
            let boolean = argument("boolean", 1)?.truthy ?? false
            return value.isUndefined || (boolean && !value.truthy) ? fallback : value
        case "first":
            if case .array(let a) = value { return a.first ?? .undefined("first") }
            if case .string(let s) = value { return s.first.map { .string(String($0)) } ?? .undefined("first") }
            throw TemplateError(.type, "first needs a sequence")
        case "last":
            if case .array(let a) = value { return a.last ?? .undefined("last") }
            if case .string(let s) = value { return s.last.map { .string(String($0)) } ?? .undefined("last") }
            throw TemplateError(.type, "last needs a sequence")
        case "join":
            let separator = argument("d", 0)?.text ?? ""
            guard case .array(let a) = value else { return .string(value.text) }
            if let attribute = argument("attribute", 1)?.text {
                return .string(a.map { v -> String in if case .object(let o) = v { return o[attribute]?.text ?? "" }; return "" }.joined(separator: separator))
            }
            return .string(a.map(\.text).joined(separator: separator))
        case "list":
            switch value {
            case .array: return value
            case .string(let s): return .array(s.map { .string(String($0)) })
            case .object(let o): return .array(o.keys.map { .string($0) })
            default: throw TemplateError(.type, "cannot make a list of '\(value.typeName)'")
            }
        case "items":
            guard case .object(let o) = value else { throw TemplateError(.type, "items needs a mapping") }
            return .array(o.pairs.map { .array([.string($0.0), $0.1]) })
        case "reverse":
            if case .array(let a) = value { return .array(a.reversed()) }
            return .string(String(value.text.reversed()))
        case "replace":
            guard let old = argument("old", 0)?.text, let new = argument("new", 1)?.text else { throw TemplateError(.type, "replace needs two arguments") }
            return .string(value.text.replacingOccurrences(of: old, with: new))
        case "int":
            switch value {
            case .int: return value
            case .double(let d): return .int(Int(exactly: d.rounded(.towardZero)) ?? 0)
            case .string(let s): return .int(Int(s.trimmingCharacters(in: .whitespaces)) ?? Int(exactly: (Double(s) ?? 0).rounded(.towardZero)) ?? 0)
            case .bool(let b): return .int(b ? 1 : 0)
            default: return .int(0)
            }
        case "float":
            return .double(number(value) ?? Double(value.text) ?? 0)
        case "abs":
            if case .int(let i) = value { return .int(abs(i)) }
            return .double(abs(number(value) ?? 0))
        case "unique":
            guard case .array(let a) = value else { return value }
            var seen: [TemplateValue] = []
            for item in a where !seen.contains(where: { $0.equals(item) }) { seen.append(item) }
            return .array(seen)
        case "map":
            guard case .array(let a) = value else { throw TemplateError(.type, "map needs a sequence") }
            if let attribute = argument("attribute", 99)?.text {
                return .array(a.map { v in if case .object(let o) = v { return o[attribute] ?? .undefined(attribute) }; return .undefined(attribute) })
            }
            guard let filterName = args.first?.text else { throw TemplateError(.type, "map needs a filter name or attribute=") }
            return .array(try a.map { try filter(filterName, $0, Array(args.dropFirst()), []) })
        case "selectattr", "rejectattr":
            guard case .array(let a) = value, let attribute = args.first?.text else { throw TemplateError(.type, "\(name) needs a sequence and an attribute") }
            let keep = try a.filter { item in
                let v: TemplateValue = { if case .object(let o) = item { return o[attribute] ?? .undefined(attribute) }; return .undefined(attribute) }()
                let passes = args.count > 1 ? try test(args[1].text, v, Array(args.dropFirst(2))) : v.truthy
                return passes == (name == "selectattr")
            }
            return .array(keep)
        case "select", "reject":
            guard case .array(let a) = value else { throw TemplateError(.type, "\(name) needs a sequence") }
            let keep = try a.filter { item in
                let passes = args.isEmpty ? item.truthy : try test(args[0].text, item, Array(args.dropFirst()))
                return passes == (name == "select")
            }
            return .array(keep)
        case "indent":
            let width: Int = { if case .int(let i)? = argument("width", 0) { return i }; return 4 }()
            let pad = String(repeating: " ", count: width)
            let lines = value.text.split(separator: "\n", omittingEmptySubsequences: false)
            return .string(lines.enumerated().map { $0.offset == 0 || $0.element.isEmpty ? String($0.element) : pad + $0.element }.joined(separator: "\n"))
        default:
            throw TemplateError(.syntax, "no filter named '\(name)'")
        }
    }

    static func htmlEscape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&#34;")
            .replacingOccurrences(of: "'", with: "&#39;")
    }

    // MARK: Methods

    /// `value.name` when it is a method of str, dict or list.
    static func method(_ name: String, on value: TemplateValue) -> TemplateValue? {
        func bound(_ body: @escaping @Sendable ([TemplateValue], [(String, TemplateValue)]) throws -> TemplateValue) -> TemplateValue {
            .function(Function(name: name, call: body))
        }
        switch value {
        case .string(let s):
            switch name {
            case "startswith", "endswith":
                return bound { args, _ in
                    let candidates: [String]
                    switch args.first {
                    case .string(let p)?: candidates = [p]
                    case .array(let a)?: candidates = a.map(\.text)
                    default: throw TemplateError(.type, "\(name) needs a string")
                    }
                    return .bool(candidates.contains { name == "startswith" ? s.hasPrefix($0) : s.hasSuffix($0) })
                }
            case "strip", "lstrip", "rstrip":
                return bound { args, _ in
                    let characters: Set<Unicode.Scalar>? = { if case .string(let c)? = args.first { return Set(c.unicodeScalars) }; return nil }()
                    func strip(_ scalar: Unicode.Scalar) -> Bool { characters?.contains(scalar) ?? scalar.properties.isWhitespace }
                    var scalars = Array(s.unicodeScalars)
                    if name != "rstrip" { scalars = Array(scalars.drop(while: strip)) }
                    if name != "lstrip" { while let last = scalars.last, strip(last) { scalars.removeLast() } }
                    return .string(String(String.UnicodeScalarView(scalars)))
                }
            case "split":
                return bound { args, _ in
                    var maxSplit = -1
                    if args.count > 1, case .int(let m) = args[1] { maxSplit = m }
                    if case .string(let separator)? = args.first {
                        guard !separator.isEmpty else { throw TemplateError(.type, "empty separator") }
                        var parts: [String] = []
                        var rest = Substring(s)
                        while maxSplit != 0, let range = rest.range(of: separator) {
                            parts.append(String(rest[..<range.lowerBound]))
                            rest = rest[range.upperBound...]
                            maxSplit -= 1
                        }
                        parts.append(String(rest))
                        return .array(parts.map { .string($0) })
                    }
                    return .array(s.split(whereSeparator: { $0.isWhitespace }).map { .string($0) })
                }
            case "replace":
                return bound { args, _ in
                    guard args.count >= 2 else { throw TemplateError(.type, "replace needs two arguments") }
                    return .string(s.replacingOccurrences(of: args[0].text, with: args[1].text))
                }
            case "upper": return bound { _, _ in .string(s.uppercased()) }
            case "lower": return bound { _, _ in .string(s.lowercased()) }
            case "title": return bound { _, _ in .string(s.capitalized) }
            case "capitalize": return bound { _, _ in .string(s.prefix(1).uppercased() + s.dropFirst().lowercased()) }
            case "find":
                return bound { args, _ in
                    guard let needle = args.first?.text, let range = s.range(of: needle) else { return .int(-1) }
                    return .int(s.distance(from: s.startIndex, to: range.lowerBound))
                }
            case "count":
                return bound { args, _ in .int(max(0, s.components(separatedBy: args.first?.text ?? "").count - 1)) }
            case "join":
                return bound { args, _ in
                    guard case .array(let a)? = args.first else { throw TemplateError(.type, "join needs a list") }
                    return .string(a.map(\.text).joined(separator: s))
                }
            case "splitlines":
                return bound { _, _ in .array(s.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).map { .string($0) }) }
            case "isdigit": return bound { _, _ in .bool(!s.isEmpty && s.allSatisfy(\.isNumber)) }
            case "isspace": return bound { _, _ in .bool(!s.isEmpty && s.allSatisfy(\.isWhitespace)) }
            default: return nil
            }
        case .object(let o):
            switch name {
            case "items": return bound { _, _ in .array(o.pairs.map { .array([.string($0.0), $0.1]) }) }
            case "keys": return bound { _, _ in .array(o.keys.map { .string($0) }) }
            case "values": return bound { _, _ in .array(o.pairs.map(\.1)) }
            case "get": return bound { args, _ in o[args.first?.text ?? ""] ?? (args.count > 1 ? args[1] : .none) }
            default: return nil
            }
        case .array(let a):
            switch name {
            case "index":
                return bound { args, _ in
                    guard let item = args.first, let index = a.firstIndex(where: { $0.equals(item) }) else {
                        throw TemplateError(.type, "value is not in list")
                    }
                    return .int(index)
                }
            case "count": return bound { args, _ in .int(a.filter { $0.equals(args.first ?? .none) }.count) }
            default: return nil
            }
        default:
            return nil
        }
    }
}
