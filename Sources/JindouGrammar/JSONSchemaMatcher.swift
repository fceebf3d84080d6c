/// Where a JSON text is inside a schema's value, byte by byte: a set of parse stacks (more
/// than one while anyOf alternatives are still open). A pure value, so the token mask can
/// try a byte and keep or drop the result.
public struct JSONSchemaMatcher: Sendable, Hashable {
    enum NumberPhase: Sendable, Hashable { case begin, minus, zero, integer(Int), dot, fraction(Int), exponent, exponentSign, exponentDigits(Int) }
    enum ObjectPhase: Sendable, Hashable {
        case afterOpen, key([UInt8], escaped: Bool), colon(Int), afterColon(Int, spaced: Bool), afterValue, afterComma(spaced: Bool)
    }
    enum ArrayPhase: Sendable, Hashable { case afterOpen, afterItem, afterComma(spaced: Bool) }
    /// Inside a string: after a backslash, in \\uXXXX, or inside a multi-byte UTF-8 character
    /// (`left` continuation bytes, the next one in `low...high`).
    enum StringPhase: Sendable, Hashable { case normal, escape, unicode(Int), utf8(left: Int, low: UInt8, high: UInt8) }

    enum Frame: Sendable, Hashable {
        case value(Int)
        case literal([[UInt8]], position: Int, spaced: Bool)
        case string(minLength: Int, maxLength: Int?, count: Int, StringPhase)
        case number(integer: Bool, NumberPhase)
        case object(node: Int, seen: [String], ObjectPhase)
        case array(node: Int, count: Int, ArrayPhase)
    }

    enum Step {
        case rejected
        case consumed(Frame)
        /// The frame continues as `Frame` and a child value starts with this byte.
        case push(Frame, child: Frame)
        /// The frame is complete; the byte belongs to it (`consumed`) or to its parent.
        case done(consumed: Bool)
    }

    /// Longest integer and fraction digit runs (so numbers end).
    static let maximumDigits = 16

    let grammar: JSONSchemaGrammar
    /// The live parse stacks, without duplicates (usually one: no set is hashed per byte then).
    private(set) var stacks: [[Frame]]

    public init(_ grammar: JSONSchemaGrammar) {
        self.grammar = grammar
        stacks = [[.value(grammar.root)]]
    }

    public static func == (a: JSONSchemaMatcher, b: JSONSchemaMatcher) -> Bool { a.stacks == b.stacks }
    public func hash(into hasher: inout Hasher) { hasher.combine(stacks) }

    /// No byte can follow.
    public var isDead: Bool { stacks.isEmpty }

    /// The text so far is a whole value of the schema.
    public var isComplete: Bool {
        stacks.contains { stack in
            stack.isEmpty || (stack.count == 1 && Self.canEnd(stack[0]))
        }
    }

    /// Feeds one byte; false (and a dead matcher) when no value of the schema continues so.
    @discardableResult
    public mutating func feed(_ byte: UInt8) -> Bool {
        var next: [[Frame]] = []
        for stack in stacks { feed(stack, byte, into: &next) }
        if next.count > 1 {
            var seen = Set<[Frame]>()
            next = next.filter { seen.insert($0).inserted }
        }
        stacks = next
        return !next.isEmpty
    }

    public mutating func feed<S: Sequence>(_ bytes: S) -> Bool where S.Element == UInt8 {
        for byte in bytes where !feed(byte) { return false }
        return true
    }

    private func feed(_ stack: [Frame], _ byte: UInt8, into results: inout [[Frame]]) {
        guard let top = stack.last else { return }  // a finished value takes no more bytes
        var stack = stack
        if case .value(let node) = top {
            if case .anyOf(let alternatives) = grammar.nodes[node] {
                for alternative in alternatives {
                    stack[stack.count - 1] = .value(alternative)
                    feed(stack, byte, into: &results)
                }
                return
            }
            guard let (start, opens) = start(node, byte) else { return }
            stack[stack.count - 1] = start
            if opens {
                results.append(stack)
                return
            }
        }
        switch step(stack[stack.count - 1], byte) {
        case .rejected:
            return
        case .consumed(let frame):
            stack[stack.count - 1] = frame
            results.append(stack)
        case .push(let frame, let child):
            stack[stack.count - 1] = frame
            stack.append(child)
            feed(stack, byte, into: &results)
        case .done(let consumed):
            stack.removeLast()
            if consumed { results.append(stack) } else { feed(stack, byte, into: &results) }
        }
    }

    /// The frame a value of `node` begins with, if `byte` can begin it, and whether the
    /// byte was its opening bracket or quote (else the frame's first step reads it).
    private func start(_ node: Int, _ byte: UInt8) -> (Frame, opens: Bool)? {
        switch grammar.nodes[node] {
        case .object: return byte == UInt8(ascii: "{") ? (.object(node: node, seen: [], .afterOpen), true) : nil
        case .array: return byte == UInt8(ascii: "[") ? (.array(node: node, count: 0, .afterOpen), true) : nil
        case .string(let minLength, let maxLength):
            return byte == UInt8(ascii: "\"") ? (.string(minLength: minLength, maxLength: maxLength, count: 0, .normal), true) : nil
        case .number(let integer): return (.number(integer: integer, .begin), false)
        case .literals(let texts): return (.literal(texts, position: 0, spaced: false), false)
        case .anyOf: return nil
        }
    }

    /// The phase after a character's first byte: .normal for ASCII, the continuation bytes
    /// a valid UTF-8 character still needs (no overlongs, surrogates or > U+10FFFF), or nil.
    static func utf8Start(_ b: UInt8) -> StringPhase? {
        switch b {
        case 0x00...0x7F: return .normal
        case 0xC2...0xDF: return .utf8(left: 1, low: 0x80, high: 0xBF)
        case 0xE0: return .utf8(left: 2, low: 0xA0, high: 0xBF)
        case 0xED: return .utf8(left: 2, low: 0x80, high: 0x9F)
        case 0xE1...0xEF: return .utf8(left: 2, low: 0x80, high: 0xBF)
        case 0xF0: return .utf8(left: 3, low: 0x90, high: 0xBF)
        case 0xF4: return .utf8(left: 3, low: 0x80, high: 0x8F)
        case 0xF1...0xF3: return .utf8(left: 3, low: 0x80, high: 0xBF)
        default: return nil
        }
    }

    /// Whether the byte before `position` of a JSON literal is a ':' or ',' outside strings.
    static func structuralSeparator(_ text: [UInt8], before position: Int) -> Bool {
        let c = text[position - 1]
        guard c == UInt8(ascii: ":") || c == UInt8(ascii: ",") else { return false }
        var inString = false, escaped = false
        for b in text[..<(position - 1)] {
            if escaped { escaped = false } else if b == UInt8(ascii: "\\") { escaped = inString } else if b == UInt8(ascii: "\"") { inString.toggle() }
        }
        return !inString
    }

    /// Whether `bytes` is valid UTF-8 so far (a character may be cut at the end).
    static func validUTF8Prefix(_ bytes: [UInt8]) -> Bool {
        var phase = StringPhase.normal
        for b in bytes {
            if case .utf8(let left, let low, let high) = phase {
                guard b >= low && b <= high else { return false }
                phase = left == 1 ? .normal : .utf8(left: left - 1, low: 0x80, high: 0xBF)
            } else {
                guard let next = utf8Start(b) else { return false }
                phase = next
            }
        }
        return true
    }

    static func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }
    static func isHex(_ b: UInt8) -> Bool { isDigit(b) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66) }

    static func canEnd(_ frame: Frame) -> Bool {
        switch frame {
        case .number(_, let phase):
            switch phase {
            case .zero, .integer, .fraction, .exponentDigits: return true
            default: return false
            }
        case .literal(let texts, let position, _): return texts.contains { $0.count == position }
        default: return false
        }
    }

    private func step(_ frame: Frame, _ b: UInt8) -> Step {
        switch frame {
        case .value:
            return .rejected
        case .literal(let texts, let position, let spaced):
            // An object or array literal may take the grammar's one space after ':' and ','.
            if b == UInt8(ascii: " "), !spaced, position > 0, let first = texts.first, Self.structuralSeparator(first, before: position) {
                return .consumed(.literal(texts, position: position, spaced: true))
            }
            let rest = texts.filter { $0.count > position && $0[position] == b }
            if rest.isEmpty { return texts.contains { $0.count == position } && position > 0 ? .done(consumed: false) : .rejected }
            if rest.allSatisfy({ $0.count == position + 1 }) { return .done(consumed: true) }
            return .consumed(.literal(rest, position: position + 1, spaced: false))
        case .string(let minLength, let maxLength, var count, let phase):
            switch phase {
            case .normal:
                if b == UInt8(ascii: "\"") { return count >= minLength ? .done(consumed: true) : .rejected }
                if b < 0x20 { return .rejected }
                guard let next = Self.utf8Start(b) else { return .rejected }
                count += 1
                if let maxLength, count > maxLength { return .rejected }
                // Past every bound the count no longer matters: equal states then compare
                // equal, so the token mask of a long string is computed once.
                if maxLength == nil, count > minLength { count = minLength + 1 }
                return .consumed(.string(minLength: minLength, maxLength: maxLength, count: count, b == UInt8(ascii: "\\") ? .escape : next))
            case .utf8(let left, let low, let high):
                guard b >= low && b <= high else { return .rejected }
                return .consumed(.string(minLength: minLength, maxLength: maxLength, count: count,
                                         left == 1 ? .normal : .utf8(left: left - 1, low: 0x80, high: 0xBF)))
            case .escape:
                if b == UInt8(ascii: "u") { return .consumed(.string(minLength: minLength, maxLength: maxLength, count: count, .unicode(4))) }
                guard Array("\"\\/bfnrt".utf8).contains(b) else { return .rejected }
                return .consumed(.string(minLength: minLength, maxLength: maxLength, count: count, .normal))
            case .unicode(let left):
                guard Self.isHex(b) else { return .rejected }
                return .consumed(.string(minLength: minLength, maxLength: maxLength, count: count, left == 1 ? .normal : .unicode(left - 1)))
            }
        case .number(let integer, let phase):
            return numberStep(integer, phase, b)
        case .object(let node, let seen, let phase):
            return objectStep(node, seen, phase, b)
        case .array(let node, let count, let phase):
            guard case .array(let items, let minItems, let maxItems) = grammar.nodes[node] else { return .rejected }
            switch phase {
            case .afterOpen:
                if b == UInt8(ascii: "]") { return minItems == 0 ? .done(consumed: true) : .rejected }
                if let maxItems, maxItems == 0 { return .rejected }
                return .push(.array(node: node, count: 1, .afterItem), child: .value(items))
            case .afterItem:
                if b == UInt8(ascii: "]") { return count >= minItems ? .done(consumed: true) : .rejected }
                if b == UInt8(ascii: ","), maxItems.map({ count < $0 }) ?? true { return .consumed(.array(node: node, count: count, .afterComma(spaced: false))) }
                return .rejected
            case .afterComma(let spaced):
                if b == UInt8(ascii: " ") { return spaced ? .rejected : .consumed(.array(node: node, count: count, .afterComma(spaced: true))) }
                return .push(.array(node: node, count: count + 1, .afterItem), child: .value(items))
            }
        }
    }

    private func numberStep(_ integer: Bool, _ phase: NumberPhase, _ b: UInt8) -> Step {
        func next(_ p: NumberPhase) -> Step { .consumed(.number(integer: integer, p)) }
        let digit = Self.isDigit(b)
        let ends: Step = Self.canEnd(.number(integer: integer, phase)) ? .done(consumed: false) : .rejected
        switch phase {
        case .begin:
            if b == UInt8(ascii: "-") { return next(.minus) }
            if b == UInt8(ascii: "0") { return next(.zero) }
            return digit ? next(.integer(1)) : .rejected
        case .minus:
            if b == UInt8(ascii: "0") { return next(.zero) }
            return digit ? next(.integer(1)) : .rejected
        case .zero:
            if !integer && b == UInt8(ascii: ".") { return next(.dot) }
            if !integer && (b == UInt8(ascii: "e") || b == UInt8(ascii: "E")) { return next(.exponent) }
            return ends
        case .integer(let n):
            if digit { return n < Self.maximumDigits ? next(.integer(n + 1)) : .rejected }
            if !integer && b == UInt8(ascii: ".") { return next(.dot) }
            if !integer && (b == UInt8(ascii: "e") || b == UInt8(ascii: "E")) { return next(.exponent) }
            return ends
        case .dot:
            return digit ? next(.fraction(1)) : .rejected
        case .fraction(let n):
            if digit { return n < Self.maximumDigits ? next(.fraction(n + 1)) : .rejected }
            if b == UInt8(ascii: "e") || b == UInt8(ascii: "E") { return next(.exponent) }
            return ends
        case .exponent:
            if b == UInt8(ascii: "+") || b == UInt8(ascii: "-") { return next(.exponentSign) }
            return digit ? next(.exponentDigits(1)) : .rejected
        case .exponentSign:
            return digit ? next(.exponentDigits(1)) : .rejected
        case .exponentDigits(let n):
            if digit { return n < 3 ? next(.exponentDigits(n + 1)) : .rejected }
            return ends
        }
    }

    /// What an unfinished key still owes its last escape: 0 nothing, -1 the character after
    /// a backslash, n > 0 that many hex digits of a \\u escape.
    static func pendingEscape(_ text: [UInt8]) -> Int {
        var state = 0
        for b in text {
            switch state {
            case -1: state = b == UInt8(ascii: "u") ? 4 : 0
            case 0: if b == UInt8(ascii: "\\") { state = -1 }
            default: state -= 1
            }
        }
        return state
    }

    private func objectStep(_ node: Int, _ seen: [String], _ phase: ObjectPhase, _ b: UInt8) -> Step {
        guard case .object(let properties, let required, let additional) = grammar.nodes[node] else { return .rejected }
        func frame(_ p: ObjectPhase, seen s: [String]? = nil) -> Step { .consumed(.object(node: node, seen: s ?? seen, p)) }
        let unseen = properties.filter { !seen.contains($0.key) }
        let mayClose = required.allSatisfy(seen.contains)
        switch phase {
        case .afterOpen:
            if b == UInt8(ascii: "}") { return mayClose ? .done(consumed: true) : .rejected }
            if b == UInt8(ascii: "\""), !unseen.isEmpty || additional != nil { return frame(.key([], escaped: false)) }
            return .rejected
        case .key(let text, let escaped):
            // A key is a JSON string: after a backslash only "\/bfnrt or u and four hex digits.
            let pending = Self.pendingEscape(text)
            if pending == -1 && !Array("\"\\/bfnrtu".utf8).contains(b) { return .rejected }
            if pending > 0 && !Self.isHex(b) { return .rejected }
            if b == UInt8(ascii: "\"") && !escaped && pending == 0 {
                guard Self.validUTF8Prefix(text + [0x20]) else { return .rejected }  // not inside a character
                if let p = unseen.first(where: { $0.escaped == text }) { return frame(.colon(p.node), seen: seen + [p.key]) }
                if let additional, !properties.contains(where: { $0.escaped == text }) { return frame(.colon(additional)) }
                return .rejected
            }
            if b < 0x20 { return .rejected }
            let grown = text + [b]
            if additional == nil && !unseen.contains(where: { $0.escaped.starts(with: grown) }) { return .rejected }
            if additional != nil && !Self.validUTF8Prefix(grown) { return .rejected }
            return frame(.key(grown, escaped: !escaped && b == UInt8(ascii: "\\")))
        case .colon(let value):
            return b == UInt8(ascii: ":") ? frame(.afterColon(value, spaced: false)) : .rejected
        case .afterColon(let value, let spaced):
            if b == UInt8(ascii: " ") { return spaced ? .rejected : frame(.afterColon(value, spaced: true)) }
            return .push(.object(node: node, seen: seen, .afterValue), child: .value(value))
        case .afterValue:
            if b == UInt8(ascii: "}") { return mayClose ? .done(consumed: true) : .rejected }
            if b == UInt8(ascii: ","), !unseen.isEmpty || additional != nil { return frame(.afterComma(spaced: false)) }
            return .rejected
        case .afterComma(let spaced):
            if b == UInt8(ascii: " ") { return spaced ? .rejected : frame(.afterComma(spaced: true)) }
            return b == UInt8(ascii: "\"") ? frame(.key([], escaped: false)) : .rejected
        }
    }
}
