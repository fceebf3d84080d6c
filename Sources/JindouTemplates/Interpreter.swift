import Foundation

/// Renders parsed nodes with jinja2's runtime semantics as transformers' sandboxed
/// environment exposes them.
final class Interpreter {
    private var scopes: [[String: TemplateValue]]
    private var output = ""

    enum Flow: Error { case breakLoop, continueLoop }

    init(globals: [String: TemplateValue]) {
        scopes = [Builtins.globals.merging(globals) { $1 }]
        scopes.append([:])
    }

    func render(_ nodes: [Node]) throws -> String {
        try execute(nodes)
        return output
    }

    // MARK: Variables

    func lookup(_ name: String) -> TemplateValue {
        for scope in scopes.reversed() { if let value = scope[name] { return value } }
        return .undefined(name)
    }

    func assign(_ name: String, _ value: TemplateValue) { scopes[scopes.count - 1][name] = value }

    // MARK: Statements

    func execute(_ nodes: [Node]) throws {
        for node in nodes { try execute(node) }
    }

    func execute(_ node: Node) throws {
        switch node {
        case .text(let t):
            output += t
        case .output(let e):
            output += try evaluate(e).text
        case .conditional(let branches, let otherwise):
            for (condition, body) in branches where try evaluate(condition).truthy {
                try execute(body)
                return
            }
            if let otherwise { try execute(otherwise) }
        case .loop(let targets, let iterable, let filter, let body, let otherwise):
            try loop(targets: targets, iterable: try evaluate(iterable), filter: filter, body: body, otherwise: otherwise)
        case .assign(let targets, let attribute, let valueExpression):
            let value = try evaluate(valueExpression)
            if let attribute {
                guard case .namespace(let namespace) = lookup(targets[0]) else {
                    throw TemplateError(.type, "cannot assign attribute '\(attribute)' on '\(targets[0])': not a namespace")
                }
                namespace.attributes[attribute] = value
            } else if targets.count == 1 {
                assign(targets[0], value)
            } else {
                let items = try iterate(value)
                guard items.count == targets.count else {
                    throw TemplateError(.type, "cannot unpack \(items.count) values into \(targets.count) names")
                }
                for (name, item) in zip(targets, items) { assign(name, item) }
            }
        case .assignBlock(let name, let body):
            assign(name, .string(try capture(body)))
        case .macro(let macro):
            assign(macro.name, .macro(macro))
        case .breakLoop:
            throw Flow.breakLoop
        case .continueLoop:
            throw Flow.continueLoop
        }
    }

    /// Renders `nodes` into a string instead of the output.
    func capture(_ nodes: [Node]) throws -> String {
        let saved = output
        output = ""
        defer { output = saved }
        try execute(nodes)
        return output
    }

    func loop(targets: [String], iterable: TemplateValue, filter: Expression?, body: [Node], otherwise: [Node]?) throws {
        var items = try iterate(iterable)
        if let filter {
            var kept: [TemplateValue] = []
            for item in items {
                scopes.append([:])
                bind(targets, item)
                let keep = try evaluate(filter).truthy
                scopes.removeLast()
                if keep { kept.append(item) }
            }
            items = kept
        }
        if items.isEmpty {
            if let otherwise { try execute(otherwise) }
            return
        }
        for (i, item) in items.enumerated() {
            var loopInfo = TemplateObject()
            loopInfo["index"] = .int(i + 1)
            loopInfo["index0"] = .int(i)
            loopInfo["revindex"] = .int(items.count - i)
            loopInfo["revindex0"] = .int(items.count - i - 1)
            loopInfo["first"] = .bool(i == 0)
            loopInfo["last"] = .bool(i == items.count - 1)
            loopInfo["length"] = .int(items.count)
            loopInfo["depth"] = .int(1)
            loopInfo["depth0"] = .int(0)
            loopInfo["previtem"] = i > 0 ? items[i - 1] : .undefined("loop.previtem")
            loopInfo["nextitem"] = i + 1 < items.count ? items[i + 1] : .undefined("loop.nextitem")
            loopInfo["cycle"] = .function(Function(name: "cycle") { args, _ in args.isEmpty ? .none : args[i % args.count] })
            scopes.append(["loop": .object(loopInfo)])
            bind(targets, item)
            defer { scopes.removeLast() }
            do {
                try execute(body)
            } catch Flow.breakLoop {
                break
            } catch Flow.continueLoop {
                continue
            }
        }
    }

    func bind(_ targets: [String], _ item: TemplateValue) {
        if targets.count == 1 {
            assign(targets[0], item)
        } else {
            let parts = (try? iterate(item)) ?? []
            for (j, name) in targets.enumerated() { assign(name, j < parts.count ? parts[j] : .undefined(name)) }
        }
    }

    /// Python iteration: lists, dict keys, string characters; undefined iterates as empty.
    func iterate(_ value: TemplateValue) throws -> [TemplateValue] {
        switch value {
        case .array(let a): return a
        case .object(let o): return o.keys.map { .string($0) }
        case .string(let s): return s.map { .string(String($0)) }
        case .undefined: return []
        default: throw TemplateError(.type, "'\(value.typeName)' object is not iterable")
        }
    }

    // MARK: Expressions

    func evaluate(_ expression: Expression) throws -> TemplateValue {
        switch expression {
        case .literal(let v): return v
        case .name(let n): return lookup(n)
        case .list(let items): return .array(try items.map(evaluate))
        case .tuple(let items): return .array(try items.map(evaluate))
        case .dict(let pairs):
            var object = TemplateObject()
            for (k, v) in pairs { object[try evaluate(k).text] = try evaluate(v) }
            return .object(object)
        case .attribute(let base, let name):
            return try attribute(of: try evaluate(base), name)
        case .item(let base, let key):
            return try item(of: try evaluate(base), try evaluate(key))
        case .slice(let base, let start, let stop, let step):
            return try slice(try evaluate(base), start.map(evaluate), stop.map(evaluate), step.map(evaluate))
        case .call(let callee, let args, let kwargs):
            let function = try evaluate(callee)
            return try call(function, try args.map(evaluate), try kwargs.map { ($0.0, try evaluate($0.1)) })
        case .filter(let base, let name, let args, let kwargs):
            return try Builtins.filter(name, try evaluate(base), try args.map(evaluate), try kwargs.map { ($0.0, try evaluate($0.1)) })
        case .test(let base, let name, let args, let negated):
            let value = try evaluate(base)
            let result = try Builtins.test(name, value, try args.map(evaluate))
            return .bool(negated ? !result : result)
        case .unary(let op, let operand):
            let value = try evaluate(operand)
            switch op {
            case "not": return .bool(!value.truthy)
            case "-":
                switch value {
                case .int(let i): return .int(-i)
                case .double(let d): return .double(-d)
                default: throw TemplateError(.type, "bad operand type for unary -: '\(value.typeName)'")
                }
            default: return value
            }
        case .binary(let op, let l, let r):
            if op == "and" {
                let left = try evaluate(l)
                return left.truthy ? try evaluate(r) : left
            }
            if op == "or" {
                let left = try evaluate(l)
                return left.truthy ? left : try evaluate(r)
            }
            return try Builtins.binary(op, try evaluate(l), try evaluate(r))
        case .conditional(let value, let condition, let otherwise):
            if try evaluate(condition).truthy { return try evaluate(value) }
            return try otherwise.map(evaluate) ?? .undefined("conditional")
        }
    }

    func attribute(of value: TemplateValue, _ name: String) throws -> TemplateValue {
        switch value {
        case .undefined(let what):
            throw TemplateError(.undefined, "'\(what)' is undefined (reading .\(name))")
        case .object(let o):
            if let v = o[name] { return v }
            if let method = Builtins.method(name, on: value) { return method }
            return .undefined("\(name)")
        case .namespace(let n):
            return n.attributes[name] ?? .undefined(name)
        default:
            if let method = Builtins.method(name, on: value) { return method }
            return .undefined("\(value.typeName) object has no attribute '\(name)'")
        }
    }

    func item(of value: TemplateValue, _ key: TemplateValue) throws -> TemplateValue {
        switch (value, key) {
        case (.undefined(let what), _):
            throw TemplateError(.undefined, "'\(what)' is undefined (reading [\(key.repr)])")
        case (.array(let a), .int(let i)):
            let index = i < 0 ? a.count + i : i
            return index >= 0 && index < a.count ? a[index] : .undefined("index \(i)")
        case (.string(let s), .int(let i)):
            let characters = Array(s)
            let index = i < 0 ? characters.count + i : i
            return index >= 0 && index < characters.count ? .string(String(characters[index])) : .undefined("index \(i)")
        case (.object(let o), .string(let k)):
            return o[k] ?? .undefined(k)
        case (.namespace(let n), .string(let k)):
            return n.attributes[k] ?? .undefined(k)
        case (_, .string(let k)):
            return try attribute(of: value, k)
        default:
            return .undefined("\(value.typeName)[\(key.repr)]")
        }
    }

    func slice(_ value: TemplateValue, _ start: TemplateValue?, _ stop: TemplateValue?, _ step: TemplateValue?) throws -> TemplateValue {
        func integer(_ v: TemplateValue?) throws -> Int? {
            guard let v else { return nil }
            switch v {
            case .int(let i): return i
            case .none, .undefined: return nil
            default: throw TemplateError(.type, "slice indices must be integers")
            }
        }
        let step = try integer(step) ?? 1
        guard step != 0 else { throw TemplateError(.type, "slice step cannot be zero") }
        func indices(_ count: Int) throws -> [Int] {
            func clamp(_ i: Int?, _ defaultValue: Int) -> Int {
                guard var i else { return defaultValue }
                if i < 0 { i += count }
                return step > 0 ? min(max(i, 0), count) : min(max(i, -1), count - 1)
            }
            let from = clamp(try integer(start), step > 0 ? 0 : count - 1)
            let to = clamp(try integer(stop), step > 0 ? count : -1)
            return Array(stride(from: from, to: to, by: step))
        }
        switch value {
        case .array(let a): return .array(try indices(a.count).map { a[$0] })
        case .string(let s):
            let characters = Array(s)
            return .string(String(try indices(characters.count).map { characters[$0] }))
        case .undefined(let what): throw TemplateError(.undefined, "'\(what)' is undefined (slicing)")
        default: throw TemplateError(.type, "'\(value.typeName)' object is not subscriptable")
        }
    }

    func call(_ function: TemplateValue, _ args: [TemplateValue], _ kwargs: [(String, TemplateValue)]) throws -> TemplateValue {
        switch function {
        case .function(let f):
            return try f.call(args, kwargs)
        case .macro(let macro):
            var scope: [String: TemplateValue] = [:]
            for (i, (name, defaultValue)) in macro.parameters.enumerated() {
                if let value = kwargs.first(where: { $0.0 == name })?.1 {
                    scope[name] = value
                } else if i < args.count {
                    scope[name] = args[i]
                } else if let defaultValue {
                    scope[name] = try evaluate(defaultValue)
                } else {
                    scope[name] = .undefined(name)
                }
            }
            scope["varargs"] = .array(Array(args.dropFirst(macro.parameters.count)))
            // A macro sees the globals and the template's top-level names, not the caller's locals.
            let saved = scopes
            scopes = [scopes[0], scopes[1], scope]
            defer { scopes = saved }
            return .string(try capture(macro.body))
        case .undefined(let what):
            throw TemplateError(.undefined, "'\(what)' is undefined (called as a function)")
        default:
            throw TemplateError(.type, "'\(function.typeName)' object is not callable")
        }
    }
}
