// The Jinja subset chat templates use, parsed into a tree: text, `{{ expr }}`,
// if/elif/else, for (with loop.*, else, filters), set (names, namespace attributes, blocks),
// macros, break/continue, and transformers' {% generation %} — with jinja2's whitespace
// rules as transformers configures them (trim_blocks, lstrip_blocks, `-` modifiers).

/// An expression.
public indirect enum Expression: Sendable {
    case literal(TemplateValue)
    case name(String)
    case list([Expression])
    case tuple([Expression])
    case dict([(Expression, Expression)])
    case attribute(Expression, String)
    case item(Expression, Expression)
    case slice(Expression, Expression?, Expression?, Expression?)
    case call(Expression, [Expression], [(String, Expression)])
    case filter(Expression, String, [Expression], [(String, Expression)])
    case test(Expression, String, [Expression], negated: Bool)
    case unary(String, Expression)
    case binary(String, Expression, Expression)
    case conditional(Expression, condition: Expression, otherwise: Expression?)
}

/// A template node.
public indirect enum Node: Sendable {
    case text(String)
    case output(Expression)
    case conditional([(Expression, [Node])], otherwise: [Node]?)
    case loop(targets: [String], iterable: Expression, filter: Expression?, body: [Node], otherwise: [Node]?)
    case assign(targets: [String], attribute: String?, value: Expression)
    case assignBlock(name: String, body: [Node])
    case macro(Macro)
    case breakLoop
    case continueLoop
}

// MARK: - Lexing

enum Token: Equatable {
    case name(String)
    case string(String)
    case int(Int)
    case double(Double)
    case op(String)
}

/// One piece of template source.
enum Piece {
    case text(String)
    case variable([Token], line: Int)
    case block([Token], line: Int)
    case comment
}

struct Lexer {
    let source: String

    /// Splits the source into text and tags, applying the whitespace rules.
    func pieces() throws -> [Piece] {
        var raw: [(piece: Piece, kind: Character, leftStrip: Bool, rightStrip: Bool, plus: Bool)] = []
        let scalars = Array(source.unicodeScalars)
        var i = 0
        var text = String.UnicodeScalarView()
        var line = 1
        func flushText() {
            raw.append((.text(String(text)), "t", false, false, false))
            text = String.UnicodeScalarView()
        }
        while i < scalars.count {
            if scalars[i] == "{", i + 1 < scalars.count, ["{", "%", "#"].contains(scalars[i + 1]) {
                let kind = Character(scalars[i + 1])
                let close: (Unicode.Scalar, Unicode.Scalar) = kind == "{" ? ("}", "}") : kind == "%" ? ("%", "}") : ("#", "}")
                var j = i + 2
                var leftStrip = false, plus = false
                if j < scalars.count && scalars[j] == "-" { leftStrip = true; j += 1 } else if j < scalars.count && scalars[j] == "+" { plus = true; j += 1 }
                // Find the closing delimiter (strings inside tags may contain it).
                var k = j
                var quote: Unicode.Scalar?
                while k + 1 < scalars.count {
                    let c = scalars[k]
                    if let q = quote {
                        if c == "\\" { k += 2; continue }
                        if c == q { quote = nil }
                    } else if kind != "#" && (c == "'" || c == "\"") {
                        quote = c
                    } else if c == close.0 && scalars[k + 1] == close.1 {
                        break
                    }
                    k += 1
                }
                guard k + 1 < scalars.count else { throw TemplateError(.syntax, "unclosed tag at line \(line)") }
                var bodyEnd = k
                var rightStrip = false
                if bodyEnd > j && scalars[bodyEnd - 1] == "-" { rightStrip = true; bodyEnd -= 1 } else if bodyEnd > j && scalars[bodyEnd - 1] == "+" { bodyEnd -= 1 }
                let body = String(String.UnicodeScalarView(scalars[j..<bodyEnd]))
                flushText()
                switch kind {
                case "{": raw.append((.variable(try tokenize(body, line: line), line: line), "{", leftStrip, rightStrip, plus))
                case "%": raw.append((.block(try tokenize(body, line: line), line: line), "%", leftStrip, rightStrip, plus))
                default: raw.append((.comment, "#", leftStrip, rightStrip, plus))
                }
                line += scalars[i..<(k + 2)].filter { $0 == "\n" }.count
                i = k + 2
            } else {
                if scalars[i] == "\n" { line += 1 }
                text.append(scalars[i])
                i += 1
            }
        }
        flushText()

        // Whitespace: `-` strips all whitespace on its side; trim_blocks drops the first
        // newline after a block or comment tag; lstrip_blocks drops spaces and tabs between
        // the start of a line and a block or comment tag.
        var result: [Piece] = []
        for (index, entry) in raw.enumerated() {
            guard case .text(var value) = entry.piece else {
                result.append(entry.piece)
                continue
            }
            if index > 0 {
                let previous = raw[index - 1]
                if previous.rightStrip {
                    value = String(value.drop { $0.isWhitespace })
                } else if previous.kind == "%" || previous.kind == "#" {
                    if value.hasPrefix("\r\n") { value.removeFirst(2) } else if value.hasPrefix("\n") { value.removeFirst() }
                }
            }
            if index + 1 < raw.count {
                let next = raw[index + 1]
                if next.leftStrip {
                    while let last = value.last, last.isWhitespace { value.removeLast() }
                } else if (next.kind == "%" || next.kind == "#") && !next.plus {
                    // Only when the tag starts its line in the source.
                    let sourceText: String = { if case .text(let t) = entry.piece { return t } else { return "" } }()
                    let tail = sourceText.split(separator: "\n", omittingEmptySubsequences: false).last ?? ""
                    let atLineStart = sourceText.contains("\n") || index == 0
                    if atLineStart && tail.allSatisfy({ $0 == " " || $0 == "\t" }) {
                        var count = tail.count
                        while count > 0, let last = value.last, last == " " || last == "\t" {
                            value.removeLast()
                            count -= 1
                        }
                    }
                }
            }
            if !value.isEmpty { result.append(.text(value)) }
        }
        return result
    }

    /// Tokens of an expression or statement.
    func tokenize(_ body: String, line: Int) throws -> [Token] {
        var tokens: [Token] = []
        let s = Array(body.unicodeScalars)
        var i = 0
        let operators = ["**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "=", "|", ".", ",", ":",
                         "(", ")", "[", "]", "{", "}"]
        while i < s.count {
            let c = s[i]
            if c.properties.isWhitespace { i += 1; continue }
            if c == "'" || c == "\"" {
                var value = String.UnicodeScalarView()
                var j = i + 1
                while j < s.count && s[j] != c {
                    if s[j] == "\\" && j + 1 < s.count {
                        j += 1
                        switch s[j] {
                        case "n": value.append("\n")
                        case "t": value.append("\t")
                        case "r": value.append("\r")
                        case "\\": value.append("\\")
                        case "'": value.append("'")
                        case "\"": value.append("\"")
                        case "u" where j + 4 < s.count:
                            let hex = String(String.UnicodeScalarView(s[(j + 1)...(j + 4)]))
                            if let code = UInt32(hex, radix: 16), let scalar = Unicode.Scalar(code) { value.append(scalar); j += 4 }
                            else { value.append("\\"); value.append("u") }
                        default:
                            value.append("\\")
                            value.append(s[j])
                        }
                    } else {
                        value.append(s[j])
                    }
                    j += 1
                }
                guard j < s.count else { throw TemplateError(.syntax, "unterminated string at line \(line)") }
                tokens.append(.string(String(value)))
                i = j + 1
                continue
            }
            if c.properties.numericType != nil && c.isASCII {
                var j = i
                var isFloat = false
                while j < s.count && (s[j].isASCII && (s[j].properties.numericType != nil || s[j] == "_" ||
                                      (s[j] == "." && !isFloat && j + 1 < s.count && s[j + 1].properties.numericType != nil))) {
                    if s[j] == "." { isFloat = true }
                    j += 1
                }
                let text = String(String.UnicodeScalarView(s[i..<j])).replacingOccurrences(of: "_", with: "")
                tokens.append(isFloat ? .double(Double(text)!) : .int(Int(text)!))
                i = j
                continue
            }
            if c.properties.isAlphabetic || c == "_" {
                var j = i
                while j < s.count && (s[j].properties.isAlphabetic || s[j] == "_" || (s[j].isASCII && s[j].properties.numericType != nil)) { j += 1 }
                tokens.append(.name(String(String.UnicodeScalarView(s[i..<j]))))
                i = j
                continue
            }
            let rest = String(String.UnicodeScalarView(s[i..<min(s.count, i + 2)]))
            guard let op = operators.first(where: { rest.hasPrefix($0) }) else {
                throw TemplateError(.syntax, "unexpected character '\(c)' at line \(line)")
            }
            tokens.append(.op(op))
            i += op.unicodeScalars.count
        }
        return tokens
    }
}
