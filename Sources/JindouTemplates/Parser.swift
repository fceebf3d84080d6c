/// Parses lexed pieces into nodes (statements) and expressions (jinja2's grammar and
/// precedence: conditional < or < and < not < comparison < + - < ~ < * / // % < ** <
/// unary < postfix with filters and tests).
struct Parser {
    private var pieces: [Piece]
    private var index = 0

    init(_ pieces: [Piece]) { self.pieces = pieces }

    mutating func parse() throws -> [Node] {
        let (nodes, end) = try parseNodes(until: [])
        if let end { throw TemplateError(.syntax, "unexpected '{% \(end) %}'") }
        return nodes
    }

    /// Nodes up to one of the `until` statements (returned, not consumed beyond its name).
    private mutating func parseNodes(until: Set<String>) throws -> ([Node], String?) {
        var nodes: [Node] = []
        while index < pieces.count {
            let piece = pieces[index]
            index += 1
            switch piece {
            case .text(let t): nodes.append(.text(t))
            case .comment: break
            case .variable(let tokens, let line):
                var stream = TokenStream(tokens, line: line)
                nodes.append(.output(try stream.expression()))
                try stream.expectEnd()
            case .block(let tokens, let line):
                guard case .name(let keyword)? = tokens.first else { throw TemplateError(.syntax, "empty block tag at line \(line)") }
                if until.contains(keyword) {
                    index -= 1
                    return (nodes, keyword)
                }
                var stream = TokenStream(Array(tokens.dropFirst()), line: line)
                switch keyword {
                case "if": nodes.append(try parseIf(&stream))
                case "for": nodes.append(try parseFor(&stream))
                case "set": nodes.append(try parseSet(&stream))
                case "macro": nodes.append(try parseMacro(&stream))
                case "break": nodes.append(.breakLoop)
                case "continue": nodes.append(.continueLoop)
                case "generation":
                    let (body, end) = try parseNodes(until: ["endgeneration"])
                    guard end != nil else { throw TemplateError(.syntax, "missing endgeneration") }
                    index += 1
                    nodes += body
                default:
                    throw TemplateError(.syntax, "unknown tag '\(keyword)' at line \(line)")
                }
            }
        }
        return (nodes, nil)
    }

    /// Consumes the terminating tag `name` (which must have no arguments).
    private mutating func consumeEnd(_ name: String) throws {
        guard index < pieces.count, case .block(let tokens, let line) = pieces[index], tokens.first == .name(name) else {
            throw TemplateError(.syntax, "missing {% \(name) %}")
        }
        if tokens.count > 1 && !name.hasPrefix("end") { _ = line }
        index += 1
    }

    private mutating func parseIf(_ stream: inout TokenStream) throws -> Node {
        var branches: [(Expression, [Node])] = []
        var condition = try stream.expression()
        try stream.expectEnd()
        while true {
            let (body, end) = try parseNodes(until: ["elif", "else", "endif"])
            branches.append((condition, body))
            guard let end, case .block(let tokens, let line) = pieces[index] else { throw TemplateError(.syntax, "missing {% endif %}") }
            index += 1
            switch end {
            case "elif":
                var s = TokenStream(Array(tokens.dropFirst()), line: line)
                condition = try s.expression()
                try s.expectEnd()
            case "else":
                let (otherwise, close) = try parseNodes(until: ["endif"])
                guard close != nil else { throw TemplateError(.syntax, "missing {% endif %}") }
                index += 1
                return .conditional(branches, otherwise: otherwise)
            default:
                return .conditional(branches, otherwise: nil)
            }
        }
    }

    private mutating func parseFor(_ stream: inout TokenStream) throws -> Node {
        var targets = [try stream.name()]
        while stream.accept(.op(",")) { targets.append(try stream.name()) }
        try stream.expect(.name("in"))
        let iterable = try stream.expression(allowConditional: false)
        var filter: Expression?
        if stream.accept(.name("if")) { filter = try stream.expression(allowConditional: false) }
        _ = stream.accept(.name("recursive"))
        try stream.expectEnd()
        let (body, end) = try parseNodes(until: ["else", "endfor"])
        guard let end else { throw TemplateError(.syntax, "missing {% endfor %}") }
        index += 1
        var otherwise: [Node]?
        if end == "else" {
            let (elseBody, close) = try parseNodes(until: ["endfor"])
            guard close != nil else { throw TemplateError(.syntax, "missing {% endfor %}") }
            index += 1
            otherwise = elseBody
        }
        return .loop(targets: targets, iterable: iterable, filter: filter, body: body, otherwise: otherwise)
    }

    private mutating func parseSet(_ stream: inout TokenStream) throws -> Node {
        var targets = [try stream.name()]
        var attribute: String?
        if stream.accept(.op(".")) {
            attribute = try stream.name()
        } else {
            while stream.accept(.op(",")) { targets.append(try stream.name()) }
        }
        if stream.atEnd, attribute == nil, targets.count == 1 {
            let (body, end) = try parseNodes(until: ["endset"])
            guard end != nil else { throw TemplateError(.syntax, "missing {% endset %}") }
            index += 1
            return .assignBlock(name: targets[0], body: body)
        }
        try stream.expect(.op("="))
        var value = try stream.expression()
        if targets.count > 1, stream.accept(.op(",")) {
            var items = [value]
            repeat { items.append(try stream.expression()) } while stream.accept(.op(","))
            value = .tuple(items)
        }
        try stream.expectEnd()
        return .assign(targets: targets, attribute: attribute, value: value)
    }

    private mutating func parseMacro(_ stream: inout TokenStream) throws -> Node {
        let name = try stream.name()
        try stream.expect(.op("("))
        var parameters: [(String, Expression?)] = []
        while !stream.accept(.op(")")) {
            let parameter = try stream.name()
            let defaultValue = stream.accept(.op("=")) ? try stream.expression() : nil
            parameters.append((parameter, defaultValue))
            if !stream.accept(.op(",")) {
                try stream.expect(.op(")"))
                break
            }
        }
        try stream.expectEnd()
        let (body, end) = try parseNodes(until: ["endmacro"])
        guard end != nil else { throw TemplateError(.syntax, "missing {% endmacro %}") }
        index += 1
        return .macro(Macro(name: name, parameters: parameters, body: body))
    }
}

/// Tokens of one tag, consumed by the expression grammar.
struct TokenStream {
    private let tokens: [Token]
    private var position = 0
    let line: Int

    init(_ tokens: [Token], line: Int) {
        self.tokens = tokens
        self.line = line
    }

    var atEnd: Bool { position >= tokens.count }
    var current: Token? { atEnd ? nil : tokens[position] }

    mutating func accept(_ token: Token) -> Bool {
        if current == token {
            position += 1
            return true
        }
        return false
    }

    mutating func expect(_ token: Token) throws {
        guard accept(token) else { throw error("expected \(token), found \(current.map { "\($0)" } ?? "end of tag")") }
    }

    mutating func expectEnd() throws {
        guard atEnd else { throw error("unexpected \(current!) ") }
    }

    mutating func name() throws -> String {
        guard case .name(let n)? = current else { throw error("expected a name, found \(current.map { "\($0)" } ?? "end of tag")") }
        position += 1
        return n
    }

    func error(_ message: String) -> TemplateError { TemplateError(.syntax, "\(message) at line \(line)") }

    // MARK: Grammar

    mutating func expression(allowConditional: Bool = true) throws -> Expression {
        let value = try or()
        guard allowConditional, accept(.name("if")) else { return value }
        let condition = try or()
        let otherwise = accept(.name("else")) ? try expression() : nil
        return .conditional(value, condition: condition, otherwise: otherwise)
    }

    mutating func or() throws -> Expression {
        var left = try and()
        while accept(.name("or")) { left = .binary("or", left, try and()) }
        return left
    }

    mutating func and() throws -> Expression {
        var left = try not()
        while accept(.name("and")) { left = .binary("and", left, try not()) }
        return left
    }

    mutating func not() throws -> Expression {
        if accept(.name("not")) { return .unary("not", try not()) }
        return try comparison()
    }

    mutating func comparison() throws -> Expression {
        var left = try additive()
        while true {
            if case .op(let op)? = current, ["==", "!=", "<", ">", "<=", ">="].contains(op) {
                position += 1
                left = .binary(op, left, try additive())
            } else if accept(.name("in")) {
                left = .binary("in", left, try additive())
            } else if current == .name("not"), position + 1 < tokens.count, tokens[position + 1] == .name("in") {
                position += 2
                left = .binary("not in", left, try additive())
            } else {
                return left
            }
        }
    }

    mutating func additive() throws -> Expression {
        var left = try concatenation()
        while case .op(let op)? = current, op == "+" || op == "-" {
            position += 1
            left = .binary(op, left, try concatenation())
        }
        return left
    }

    mutating func concatenation() throws -> Expression {
        var left = try multiplicative()
        while accept(.op("~")) { left = .binary("~", left, try multiplicative()) }
        return left
    }

    mutating func multiplicative() throws -> Expression {
        var left = try power()
        while case .op(let op)? = current, ["*", "/", "//", "%"].contains(op) {
            position += 1
            left = .binary(op, left, try power())
        }
        return left
    }

    mutating func power() throws -> Expression {
        let left = try unary()
        if accept(.op("**")) { return .binary("**", left, try unary()) }
        return left
    }

    mutating func unary() throws -> Expression {
        if accept(.op("-")) { return .unary("-", try unary()) }
        if accept(.op("+")) { return .unary("+", try unary()) }
        return try postfix(try primary())
    }

    mutating func primary() throws -> Expression {
        guard let token = current else { throw error("expected an expression") }
        position += 1
        switch token {
        case .string(var s):
            while case .string(let next)? = current {  // adjacent literals concatenate
                s += next
                position += 1
            }
            return .literal(.string(s))
        case .int(let i): return .literal(.int(i))
        case .double(let d): return .literal(.double(d))
        case .name(let n):
            switch n {
            case "true", "True": return .literal(.bool(true))
            case "false", "False": return .literal(.bool(false))
            case "none", "None": return .literal(.none)
            default: return .name(n)
            }
        case .op("("):
            if accept(.op(")")) { return .tuple([]) }
            let first = try expression()
            if accept(.op(",")) {
                var items = [first]
                while !accept(.op(")")) {
                    items.append(try expression())
                    if !accept(.op(",")) { try expect(.op(")")); break }
                }
                return .tuple(items)
            }
            try expect(.op(")"))
            return first
        case .op("["):
            var items: [Expression] = []
            while !accept(.op("]")) {
                items.append(try expression())
                if !accept(.op(",")) { try expect(.op("]")); break }
            }
            return .list(items)
        case .op("{"):
            var pairs: [(Expression, Expression)] = []
            while !accept(.op("}")) {
                let key = try expression()
                try expect(.op(":"))
                pairs.append((key, try expression()))
                if !accept(.op(",")) { try expect(.op("}")); break }
            }
            return .dict(pairs)
        default:
            throw error("unexpected \(token)")
        }
    }

    mutating func postfix(_ base: Expression) throws -> Expression {
        var node = base
        while true {
            if accept(.op(".")) {
                guard let token = current else { throw error("expected an attribute name") }
                position += 1
                switch token {
                case .name(let n): node = .attribute(node, n)
                case .int(let i): node = .item(node, .literal(.int(i)))
                default: throw error("bad attribute \(token)")
                }
            } else if accept(.op("[")) {
                node = try subscriptOrSlice(node)
            } else if accept(.op("(")) {
                let (args, kwargs) = try arguments()
                node = .call(node, args, kwargs)
            } else if accept(.op("|")) {
                let name = try self.name()
                var args: [Expression] = [], kwargs: [(String, Expression)] = []
                if accept(.op("(")) { (args, kwargs) = try arguments() }
                node = .filter(node, name, args, kwargs)
            } else if current == .name("is") {
                position += 1
                let negated = accept(.name("not"))
                let name: String
                switch current {
                case .name(let n)?: name = n; position += 1
                case .op("==")?: name = "eq"; position += 1
                default: throw error("expected a test name after 'is'")
                }
                var args: [Expression] = []
                if accept(.op("(")) {
                    args = try arguments().0
                } else if let next = current, case .name(let n) = next, !["and", "or", "if", "else", "is", "in", "not"].contains(n) {
                    args = [try primary()]
                } else if case .string? = current {
                    args = [try primary()]
                } else if case .int? = current {
                    args = [try primary()]
                }
                node = .test(node, name, args, negated: negated)
            } else {
                return node
            }
        }
    }

    mutating func subscriptOrSlice(_ base: Expression) throws -> Expression {
        var parts: [Expression?] = [nil]
        var sawColon = false
        while !accept(.op("]")) {
            if accept(.op(":")) {
                sawColon = true
                parts.append(nil)
            } else {
                parts[parts.count - 1] = try expression()
            }
        }
        if !sawColon {
            guard let index = parts[0] else { throw error("empty subscript") }
            return .item(base, index)
        }
        while parts.count < 3 { parts.append(nil) }
        return .slice(base, parts[0], parts[1], parts[2])
    }

    mutating func arguments() throws -> ([Expression], [(String, Expression)]) {
        var args: [Expression] = [], kwargs: [(String, Expression)] = []
        while !accept(.op(")")) {
            if case .name(let n)? = current, position + 1 < tokens.count, tokens[position + 1] == .op("=") {
                position += 2
                kwargs.append((n, try expression()))
            } else {
                args.append(try expression())
            }
            if !accept(.op(",")) { try expect(.op(")")); break }
        }
        return (args, kwargs)
    }
}
