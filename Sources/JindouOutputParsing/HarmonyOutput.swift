// gpt-oss's harmony format: the model writes messages
//   <|start|>assistant[ to=RECIPIENT]<|channel|>CHANNEL[ to=RECIPIENT][ <|constrain|>TYPE]<|message|>BODY<|end|>
// after the generation prompt `<|start|>assistant` (so the first header arrives without its
// `<|start|>`), ending the turn with the stop tokens <|return|> or <|call|>. The `analysis`
// channel is reasoning, `final` and recipient-less `commentary` (a preamble) are content, a
// message to `functions.NAME` is a tool call whose body is the JSON arguments, and messages to
// any other recipient (the built-in `python`, `browser.*`, `container.*` tools) are dropped.
// Mirrors llama.cpp's parser (common/parsers/gpt-oss.cpp), which is also the oracle of the
// corpus (tools/fixture_parsers.py --llama-cpp); vLLM's own (openai_harmony) could not run here.

/// The harmony side of an output format: vLLM's `--tool-call-parser openai` and
/// `--reasoning-parser openai_gptoss`, which only pair with each other.
public struct HarmonyFormat: Sendable {
    /// The analysis channel is reasoning; otherwise it stays in the content, markers and all,
    /// as llama.cpp's `--reasoning-format none` leaves it.
    public var extractsReasoning: Bool
    /// Messages to `functions.NAME` become tool calls.
    public var parsesToolCalls: Bool

    static let markers: [(name: String, literal: String)] = [
        ("START", "<|start|>"), ("END", "<|end|>"), ("MESSAGE", "<|message|>"), ("CHANNEL", "<|channel|>"),
        ("CONSTRAIN", "<|constrain|>"), ("CALL", "<|call|>"), ("RETURN", "<|return|>"),
    ]
}

/// What one message's body becomes, decided when its header ends at `<|message|>`.
enum HarmonyBody: Equatable {
    case reasoning, content, dropped
    case call(index: Int)
    /// Analysis kept in the content: its header and end marker are written out too.
    case rawAnalysis
}

/// One message header (`assistant to=functions.f<|channel|>commentary <|constrain|>json`).
struct HarmonyHeader {
    var role = ""
    var channel: String?
    var recipient: String?

    /// The role is the text before the first ` to=` or `<|channel|>`; the last channel and
    /// the last recipient other than `assistant` count (gpt-oss sometimes writes a stray
    /// `<|channel|>commentary to=assistant` before the real header).
    init(_ text: String) {
        let scalars = Array(text.unicodeScalars)
        let channelMarker = Array("<|channel|>".unicodeScalars), to = Array(" to=".unicodeScalars)
        func word(from start: Int) -> (String, Int) {
            var end = start
            while end < scalars.count, scalars[end] != " ", scalars[end] != "\n", scalars[end] != "\t",
                  !(scalars[end] == "<" && end + 1 < scalars.count && scalars[end + 1] == "|") { end += 1 }
            return (String(String.UnicodeScalarView(scalars[start..<end])), end)
        }
        func matches(_ pattern: [Unicode.Scalar], at i: Int) -> Bool {
            i + pattern.count <= scalars.count && scalars[i..<(i + pattern.count)].elementsEqual(pattern)
        }
        var i = 0, roleEnd: Int?
        while i < scalars.count {
            if matches(channelMarker, at: i) {
                roleEnd = roleEnd ?? i
                let (name, end) = word(from: i + channelMarker.count)
                channel = name
                i = end
            } else if matches(to, at: i) {
                roleEnd = roleEnd ?? i
                let (name, end) = word(from: i + to.count)
                if name != "assistant" { recipient = name }
                i = end
            } else {
                i += 1
            }
        }
        role = String(String.UnicodeScalarView(scalars[..<(roleEnd ?? scalars.count)]))
    }
}

/// Reads harmony messages incrementally into reasoning, content and tool-call deltas.
struct HarmonyParser {
    private enum Phase {
        case header(String)
        case body(HarmonyBody)
        /// After a message's end, waiting for the next `<|start|>`.
        case between
    }

    let format: HarmonyFormat
    let toolNames: Set<String>
    let makeID: @Sendable (Int) -> String
    private var lexer = MarkerLexer(HarmonyFormat.markers)
    private var phase = Phase.header("assistant")
    private var calls = 0
    /// The text so far while no message body has opened (kept for the end, see `finish`).
    private var unread: String? = ""
    /// A call's body is one JSON value: markers inside its strings are text.
    private var json = JSONStringScanner()

    init(format: HarmonyFormat, tools: [ToolDefinition], parseToolCalls: Bool, makeID: @escaping @Sendable (Int) -> String) {
        var format = format
        format.parsesToolCalls = format.parsesToolCalls && parseToolCalls
        self.format = format
        toolNames = Set(tools.map(\.name))
        self.makeID = makeID
    }

    mutating func feed(_ text: String) -> AssistantDelta {
        unread? += text
        return absorb(lexer.feed(text))
    }

    /// The end. A text that never opened a message body (`<|message|>`) is not harmony at
    /// all: it is returned as the content, as written (llama-server answers an error).
    mutating func finish() -> AssistantDelta {
        var delta = absorb(lexer.flush())
        if let unread, !unread.isEmpty { delta.content = unread }
        return delta
    }

    private mutating func absorb(_ pieces: [MarkerLexer.Piece]) -> AssistantDelta {
        var delta = AssistantDelta()
        for piece in pieces {
            switch piece {
            case .content(let scalars): text(String(String.UnicodeScalarView(scalars)), into: &delta)
            case .marker(let name, let scalars): marker(name, String(String.UnicodeScalarView(scalars)), into: &delta)
            }
        }
        return delta
    }

    private mutating func text(_ text: String, into delta: inout AssistantDelta) {
        switch phase {
        case .header(let header): phase = .header(header + text)
        case .body(let body): append(text, of: body, to: &delta)
        case .between: break
        }
    }

    private mutating func marker(_ name: String, _ literal: String, into delta: inout AssistantDelta) {
        switch (phase, name) {
        case (.header(let header), "MESSAGE"):
            let body = decide(HarmonyHeader(header))
            phase = .body(body)
            unread = nil
            json = JSONStringScanner()
            switch body {
            case .call(let index):
                let name = HarmonyHeader(header).recipient.map { String($0.dropFirst("functions.".count)) } ?? ""
                delta.toolCalls.append(ToolCallDelta(index: index, id: makeID(index), name: name, arguments: ""))
            case .rawAnalysis:
                append("<|channel|>analysis<|message|>", of: .content, to: &delta)
            default:
                break
            }
        case (.header, "START"):
            phase = .header("")
        case (.header, "END"), (.header, "CALL"), (.header, "RETURN"):
            phase = .between
        case (.header(let header), _):
            phase = .header(header + literal)
        case (.body(let body), _) where json.inString:
            append(literal, of: body, to: &delta)
        case (.body(let body), "END"), (.body(let body), "CALL"), (.body(let body), "RETURN"):
            if body == .rawAnalysis { append(literal, of: .content, to: &delta) }
            phase = .between
        case (.body(let body), _):
            append(literal, of: body, to: &delta)
        case (.between, "START"):
            phase = .header("")
        case (.between, _):
            break
        }
    }

    private mutating func decide(_ header: HarmonyHeader) -> HarmonyBody {
        guard header.role == "assistant" else { return .dropped }
        if let recipient = header.recipient {
            guard format.parsesToolCalls, recipient.hasPrefix("functions."),
                  toolNames.contains(String(recipient.dropFirst("functions.".count))) else { return .dropped }
            calls += 1
            return .call(index: calls - 1)
        }
        switch header.channel {
        case "analysis": return format.extractsReasoning ? .reasoning : .rawAnalysis
        case "commentary", "final": return .content
        default: return .dropped
        }
    }

    private mutating func append(_ text: String, of body: HarmonyBody, to delta: inout AssistantDelta) {
        guard !text.isEmpty else { return }
        if case .call = body {
            for c in text.unicodeScalars { _ = json.absorb(c) }
        }
        switch body {
        case .reasoning: delta.reasoning = (delta.reasoning ?? "") + text
        case .content, .rawAnalysis: delta.content = (delta.content ?? "") + text
        case .call(let index):
            if let last = delta.toolCalls.indices.last, delta.toolCalls[last].index == index {
                delta.toolCalls[last].arguments = (delta.toolCalls[last].arguments ?? "") + text
            } else {
                delta.toolCalls.append(ToolCallDelta(index: index, arguments: text))
            }
        case .dropped: break
        }
    }
}
