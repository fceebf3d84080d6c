import JindouTemplates

/// How a family marks reasoning: text before `end` (after an optional `start`) is reasoning
/// when the turn starts thinking; some tool markers end it implicitly.
public struct ReasoningFormat: Sendable {
    public var start = "<think>"
    public var end = "</think>"
    /// Tool-call markers that end reasoning and begin the content with themselves.
    public var implicitEnds: [String] = []
    /// `<think>` in the content opens reasoning again (GLM).
    public var contentMayOpen = false
    /// Trailing whitespace of the reasoning is dropped.
    public var stripTrailingWhitespace = true
    /// Whether a turn starts inside reasoning, from the request's chat_template_kwargs.
    public var thinks: @Sendable (TemplateObject) -> Bool

    public init(thinks: @escaping @Sendable (TemplateObject) -> Bool) { self.thinks = thinks }

    var grammar: ParserGrammar {
        var markers = [("THINK_START", start), ("THINK_END", end)]
        var transitions: [ParserStateMarker: ParserTransition] = [
            ParserStateMarker(.reasoning, "THINK_START"): ParserTransition(.reasoning),
            ParserStateMarker(.reasoning, "THINK_END"): ParserTransition(.content, [.reasoningEnd]),
            ParserStateMarker(.content, "THINK_END"): ParserTransition(.content),
        ]
        if contentMayOpen { transitions[ParserStateMarker(.content, "THINK_START")] = ParserTransition(.reasoning) }
        for (i, marker) in implicitEnds.enumerated() {
            markers.append(("IMPLICIT_END_\(i)", marker))
            transitions[ParserStateMarker(.reasoning, "IMPLICIT_END_\(i)")] = ParserTransition(.content, [.reasoningEnd, .text])
        }
        return ParserGrammar(name: "reasoning", markers: markers, transitions: transitions, initialState: .content, argumentsAreJSON: false)
    }
}

/// A family's output format: its reasoning markers and its tool-call format, selected by
/// vLLM's parser names (`--reasoning-parser`, `--tool-call-parser`).
public struct OutputFormat: Sendable {
    public var reasoningParser: String?
    public var reasoning: ReasoningFormat?
    public var toolCallParser: String?
    public var toolCalls: ToolCallFormat?
    /// gpt-oss's channels: when set, the reasoning and tool-call sides above are unused.
    public var harmony: HarmonyFormat?

    /// Whether a message goes through a parser at all (then special tokens stay in its text).
    public func parsesAnything(parseToolCalls: Bool, templateArguments: TemplateObject) -> Bool {
        harmony != nil || (reasoning?.thinks(templateArguments) ?? false) || (parseToolCalls && toolCalls != nil)
    }

    public init(reasoningParser: String?, reasoning: ReasoningFormat?, toolCallParser: String?, toolCalls: ToolCallFormat?) {
        self.reasoningParser = reasoningParser
        self.reasoning = reasoning
        self.toolCallParser = toolCallParser
        self.toolCalls = toolCalls
    }
}

/// Splits one generated message into reasoning, content and tool calls, incrementally:
/// `feed` each piece of text as it is generated and send the deltas, `finish` at the end.
/// Two stages, as vLLM composes a reasoning parser and a tool parser: the reasoning stage
/// splits off the reasoning; the content it passes on goes through the tool stage.
public struct AssistantOutputParser: Sendable {
    private var reasoningEngine: ParserEngine?
    private let stripTrailingReasoning: Bool
    private var deferredReasoning = ""
    private var reasoningEnded: Bool
    private var toolEngine: ParserEngine?
    private var assembler: ToolCallAssembler?
    private var harmony: HarmonyParser?

    /// - Parameters:
    ///   - parseToolCalls: false when the request offers no tools or says `tool_choice: none`.
    ///   - makeID: the id of the n-th call of the message.
    public init(format: OutputFormat, tools: [ToolDefinition], parseToolCalls: Bool,
                templateArguments: TemplateObject = TemplateObject(),
                makeID: @escaping @Sendable (Int) -> String) {
        if let harmony = format.harmony {
            self.harmony = HarmonyParser(format: harmony, tools: tools, parseToolCalls: parseToolCalls, makeID: makeID)
        }
        if let reasoning = format.reasoning, reasoning.thinks(templateArguments) {
            reasoningEngine = ParserEngine(reasoning.grammar, initialState: .reasoning)
            stripTrailingReasoning = reasoning.stripTrailingWhitespace
            reasoningEnded = false
        } else {
            stripTrailingReasoning = false
            reasoningEnded = true
        }
        if parseToolCalls, let toolCalls = format.toolCalls {
            toolEngine = ParserEngine(toolCalls.grammar, initialState: .content)
            assembler = ToolCallAssembler(format: toolCalls, tools: tools, makeID: makeID)
        }
    }

    /// The whole message at once (a non-streaming answer).
    public static func parse(_ text: String, format: OutputFormat, tools: [ToolDefinition], parseToolCalls: Bool,
                             templateArguments: TemplateObject = TemplateObject(),
                             makeID: @escaping @Sendable (Int) -> String) -> AssistantOutput {
        var parser = AssistantOutputParser(format: format, tools: tools, parseToolCalls: parseToolCalls,
                                           templateArguments: templateArguments, makeID: makeID)
        if parser.harmony != nil { return parser.wholeMessage(text) }
        var reasoning = "", content = ""
        var events: [ParserEvent] = [.text(text)]
        if var engine = parser.reasoningEngine { events = engine.feed(text) + engine.finish() }
        for event in events {
            switch event {
            case .reasoning(let r): reasoning += r
            case .text(let t): content += t
            default: break
            }
        }
        if parser.stripTrailingReasoning { reasoning = pythonRStrip(reasoning) }
        var output = AssistantOutput(reasoning: reasoning.isEmpty ? nil : reasoning, content: content.isEmpty ? nil : content)
        guard var engine = parser.toolEngine, var assembler = parser.assembler else { return output }
        let (parsedContent, calls) = assembler.complete(engine.feed(content) + engine.finish())
        if !calls.isEmpty || assembler.replacesContentWithoutCalls {
            output.toolCalls = calls
            output.content = parsedContent.flatMap { pythonStrip($0).isEmpty ? nil : $0 }
        }
        return output
    }

    /// The deltas for the next piece of generated text.
    public mutating func feed(_ text: String) -> AssistantDelta {
        if harmony != nil { return harmony!.feed(text) }
        return step(reasoningEngine != nil ? reasoningEngine!.feed(text) : [.text(text)], finished: false)
    }

    /// The deltas for the end of the message (held-back text, open calls closed).
    public mutating func finish() -> AssistantDelta {
        if harmony != nil { return harmony!.finish() }
        return step(reasoningEngine != nil ? reasoningEngine!.finish() : [], finished: true)
    }

    /// A whole message from the streamed deltas of one piece (the harmony reader works the
    /// same way whole and streamed).
    private mutating func wholeMessage(_ text: String) -> AssistantOutput {
        var output = AssistantOutput()
        for delta in [feed(text), finish()] {
            if let r = delta.reasoning { output.reasoning = (output.reasoning ?? "") + r }
            if let c = delta.content { output.content = (output.content ?? "") + c }
            for call in delta.toolCalls {
                if call.index == output.toolCalls.count {
                    output.toolCalls.append(ParsedToolCall(id: call.id ?? "", name: call.name ?? "", arguments: call.arguments ?? ""))
                } else {
                    output.toolCalls[call.index].arguments += call.arguments ?? ""
                }
            }
        }
        return output
    }

    private mutating func step(_ events: [ParserEvent], finished: Bool) -> AssistantDelta {
        var delta = AssistantDelta()
        var reasoning = "", content = ""
        for event in events {
            switch event {
            case .reasoning(let r): reasoning += r
            case .reasoningEnd: reasoningEnded = true
            case .text(let t): content += t
            default: break
            }
        }
        if stripTrailingReasoning {
            if !reasoning.isEmpty {
                let combined = deferredReasoning + reasoning
                let trimmed = pythonRStrip(combined)
                deferredReasoning = String(combined.unicodeScalars.dropFirst(trimmed.unicodeScalars.count))
                reasoning = trimmed
            } else if reasoningEnded {
                deferredReasoning = ""
            }
        }
        delta.reasoning = reasoning.isEmpty ? nil : reasoning
        if var engine = toolEngine, var assembler {
            var toolEvents = content.isEmpty ? [] : engine.feed(content)
            if finished { toolEvents += engine.finish() }
            let (c, calls) = assembler.delta(toolEvents, finished: finished)
            delta.content = c
            delta.toolCalls = calls
            toolEngine = engine
            self.assembler = assembler
        } else {
            delta.content = content.isEmpty ? nil : content
        }
        return delta
    }
}
