// A declarative parser for the text a model generates: reasoning blocks and tool calls.
// Mirrors vLLM 0.33.0's parser engine (vllm/parser/engine/parser_engine_config.py,
// incremental_lexer.py, streaming_parser_engine.py): a family is a grammar (its marker
// strings and a transition table), and one engine lexes any grammar incrementally,
// holding back text that may still grow into a marker, so markers never leak as content.

/// Where the parser is in the generated text.
public enum ParserState: Hashable, Sendable {
    case content, reasoning, toolPreamble, toolName, toolArguments, toolBetween
}

/// What the engine reports, in order, as text arrives.
public enum ParserEvent: Equatable, Sendable {
    case text(String)
    case reasoning(String)
    case reasoningEnd
    case toolCallStart(index: Int)
    case toolName(index: Int, String)
    case arguments(index: Int, String)
    case toolCallEnd(index: Int)
}

/// The kinds of event a transition emits (their payload is the marker's text).
public enum ParserEventKind: Hashable, Sendable {
    case reasoningEnd, toolCallStart, arguments, toolCallEnd
    /// The marker passes on as content (a tool marker that ends reasoning implicitly).
    case text
}

/// Where a marker seen in a state leads, and what it reports on the way.
public struct ParserTransition: Sendable {
    public var next: ParserState
    public var events: [ParserEventKind]
    public init(_ next: ParserState, _ events: [ParserEventKind] = []) {
        self.next = next
        self.events = events
    }
}

/// A state and the marker seen in it.
public struct ParserStateMarker: Hashable, Sendable {
    public var state: ParserState
    public var marker: String
    public init(_ state: ParserState, _ marker: String) {
        self.state = state
        self.marker = marker
    }
}

/// One family's output format: its markers (name → spellings) and transitions.
public struct ParserGrammar: Sendable {
    public var name: String
    public var markers: [(name: String, literal: String)]
    public var transitions: [ParserStateMarker: ParserTransition]
    public var initialState: ParserState
    /// Tool arguments are JSON text streamed through as is (with the top-level closing
    /// brace held back); otherwise they are the format's raw text for a converter.
    public var argumentsAreJSON: Bool

    public init(name: String, markers: [(String, String)], transitions: [ParserStateMarker: ParserTransition],
                initialState: ParserState, argumentsAreJSON: Bool) {
        self.name = name
        self.markers = markers.map { (name: $0.0, literal: $0.1) }
        self.transitions = transitions
        self.initialState = initialState
        self.argumentsAreJSON = argumentsAreJSON
    }

    /// The same grammar without a marker (and its transitions).
    public func removing(markers names: Set<String>) -> ParserGrammar {
        var copy = self
        copy.markers.removeAll { names.contains($0.name) }
        copy.transitions = transitions.filter { !names.contains($0.key.marker) }
        return copy
    }
}

/// Splits text into marker and content pieces, holding back a tail that may still become a
/// marker (vLLM's IncrementalLexer, literal terminals only). Works on Unicode scalars, as
/// Python strings do.
struct MarkerLexer {
    enum Piece: Equatable { case content([Unicode.Scalar]), marker(String, [Unicode.Scalar]) }

    private let literals: [(name: String, scalars: [Unicode.Scalar])]
    private let firstScalars: Set<Unicode.Scalar>
    private let prefixes: Set<[Unicode.Scalar]>
    private var buffer: [Unicode.Scalar] = []

    init(_ markers: [(name: String, literal: String)]) {
        literals = markers.map { ($0.name, Array($0.literal.unicodeScalars)) }.filter { !$0.1.isEmpty }
        firstScalars = Set(literals.map { $0.scalars[0] })
        var prefixes = Set<[Unicode.Scalar]>()
        for literal in literals where literal.scalars.count > 1 {
            for length in 1..<literal.scalars.count { prefixes.insert(Array(literal.scalars[..<length])) }
        }
        self.prefixes = prefixes
    }

    mutating func reset() { buffer.removeAll() }

    mutating func feed(_ text: String) -> [Piece] {
        let scalars = Array(text.unicodeScalars)
        if buffer.isEmpty, !scalars.contains(where: firstScalars.contains) {
            return scalars.isEmpty ? [] : [.content(scalars)]
        }
        buffer += scalars
        return drain(final: false)
    }

    mutating func flush() -> [Piece] {
        var pieces = buffer.isEmpty ? [] : drain(final: true)
        if !buffer.isEmpty {
            pieces.append(.content(buffer))
            buffer.removeAll()
        }
        return pieces
    }

    private func longestMatch() -> (name: String, length: Int)? {
        var best: (name: String, length: Int)?
        for literal in literals where literal.scalars[0] == buffer[0] && literal.scalars.count > (best?.length ?? 0) {
            if buffer.starts(with: literal.scalars) { best = (literal.name, literal.scalars.count) }
        }
        return best
    }

    private mutating func drain(final: Bool) -> [Piece] {
        var pieces: [Piece] = []
        while !buffer.isEmpty {
            if !buffer.contains(where: firstScalars.contains) {
                pieces.append(.content(buffer))
                buffer.removeAll()
                break
            }
            let best = longestMatch()
            // A buffer that is a marker and the prefix of a longer one waits for more text
            // (`<invoke name=` may still become `<invoke name="`).
            if !final && prefixes.contains(buffer) {
                guard let best else { break }
                let longer = literals.contains { $0.scalars.count > best.length && $0.scalars.starts(with: buffer) }
                if longer { break }
                pieces.append(.marker(best.name, Array(buffer[..<best.length])))
                buffer.removeFirst(best.length)
                continue
            }
            if let best {
                pieces.append(.marker(best.name, Array(buffer[..<best.length])))
                buffer.removeFirst(best.length)
            } else {
                let end = contentBoundary()
                pieces.append(.content(Array(buffer[..<end])))
                buffer.removeFirst(end)
            }
        }
        return pieces
    }

    /// The first position after the start where a marker (or a prefix of one cut by the
    /// buffer's end) begins.
    private func contentBoundary() -> Int {
        let n = buffer.count
        var i = 1
        while i < n {
            if firstScalars.contains(buffer[i]) {
                let remaining = n - i
                for literal in literals {
                    let length = min(remaining, literal.scalars.count)
                    if buffer[i..<(i + length)].elementsEqual(literal.scalars[..<length]) { return i }
                }
            }
            i += 1
        }
        return n
    }
}

/// Where JSON text is with respect to its strings, one character at a time.
struct JSONStringScanner {
    private(set) var inString = false
    private var escapeNext = false

    /// Takes one character; true when it belongs to a string (its quotes included).
    mutating func absorb(_ c: Unicode.Scalar) -> Bool {
        if escapeNext {
            escapeNext = false
        } else if inString {
            if c == "\\" { escapeNext = true } else if c == "\"" { inString = false }
        } else if c == "\"" {
            inString = true
        } else {
            return false
        }
        return true
    }
}

/// The incremental engine over one grammar (vLLM's StreamingParserEngine, text mode).
public struct ParserEngine: Sendable {
    public let grammar: ParserGrammar
    public private(set) var state: ParserState
    private var lexer: MarkerLexer
    private var toolIndex = -1
    // JSON arguments: characters not yet known to be safe to stream.
    private var argumentBuffer: [Unicode.Scalar] = []
    private var braceDepth = 0
    private var json = JSONStringScanner()

    public init(_ grammar: ParserGrammar, initialState: ParserState? = nil) {
        self.grammar = grammar
        state = initialState ?? grammar.initialState
        lexer = MarkerLexer(grammar.markers)
    }

    public mutating func feed(_ text: String) -> [ParserEvent] {
        process(lexer.feed(text))
    }

    /// The end of the text: held-back text is released and an open block is closed.
    public mutating func finish() -> [ParserEvent] {
        var events = process(lexer.flush())
        if !argumentBuffer.isEmpty {
            events.append(.arguments(index: toolIndex, String(String.UnicodeScalarView(argumentBuffer))))
            argumentBuffer.removeAll()
        }
        switch state {
        case .toolPreamble, .toolArguments, .toolName, .toolBetween:
            if toolIndex >= 0 { events.append(.toolCallEnd(index: toolIndex)) }
            state = .content
        case .reasoning:
            events.append(.reasoningEnd)
            state = .content
        case .content:
            break
        }
        return events
    }

    private mutating func process(_ pieces: [MarkerLexer.Piece]) -> [ParserEvent] {
        var events: [ParserEvent] = []
        for piece in pieces {
            switch piece {
            case .content(let scalars):
                if !scalars.isEmpty { events += emit(scalars) }
            case .marker(let name, let scalars):
                if let transition = grammar.transitions[ParserStateMarker(state, name)] {
                    events += apply(transition, String(String.UnicodeScalarView(scalars)))
                } else {
                    events += emit(scalars)
                }
            }
        }
        return events
    }

    /// Plain text in the current state.
    private mutating func emit(_ scalars: [Unicode.Scalar]) -> [ParserEvent] {
        let text = String(String.UnicodeScalarView(scalars))
        switch state {
        case .content: return [.text(text)]
        case .reasoning: return [.reasoning(text)]
        case .toolName: return [.toolName(index: toolIndex, text)]
        case .toolArguments:
            return grammar.argumentsAreJSON ? feedJSONArguments(scalars) : [.arguments(index: toolIndex, text)]
        case .toolPreamble, .toolBetween: return []
        }
    }

    private mutating func apply(_ transition: ParserTransition, _ value: String) -> [ParserEvent] {
        var events: [ParserEvent] = []
        if state == .toolArguments, transition.next != .toolArguments, !argumentBuffer.isEmpty {
            events.append(.arguments(index: toolIndex, String(String.UnicodeScalarView(argumentBuffer))))
            argumentBuffer.removeAll()
        }
        state = transition.next
        for kind in transition.events {
            switch kind {
            case .reasoningEnd: events.append(.reasoningEnd)
            case .toolCallStart:
                toolIndex += 1
                events.append(.toolCallStart(index: toolIndex))
            case .arguments: events.append(.arguments(index: toolIndex, value))
            case .toolCallEnd: events.append(.toolCallEnd(index: toolIndex))
            case .text: events.append(.text(value))
            }
        }
        if state == .toolArguments {
            braceDepth = 0
            json = JSONStringScanner()
        }
        return events
    }

    /// JSON arguments stream as they come, except a closing brace that returns to depth 0,
    /// which waits for the next character (or the end) to show it is not the last.
    private mutating func feedJSONArguments(_ scalars: [Unicode.Scalar]) -> [ParserEvent] {
        var events: [ParserEvent] = []
        for c in scalars {
            argumentBuffer.append(c)
            var holdBack = false
            if json.absorb(c) {
                // inside a string, or its quotes
            } else if c == "{" || c == "[" {
                braceDepth += 1
            } else if c == "}" || c == "]" {
                if braceDepth > 0 { braceDepth -= 1 }
                holdBack = braceDepth == 0
            }
            if holdBack { continue }
            events.append(.arguments(index: toolIndex, String(String.UnicodeScalarView(argumentBuffer))))
            argumentBuffer.removeAll()
        }
        return events
    }
}
