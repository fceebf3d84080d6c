import Foundation
import JindouGrammar
import JindouOutputParsing
import JindouTemplates
import JindouTokenizer
import Synchronization

/// The vocabulary trie for constrained decoding, built the first time a request needs it.
final class LazyVocabulary: Sendable {
    private let tokenizer: Tokenizer?
    private let size: Int
    private let built = Mutex<TokenVocabulary?>(nil)

    init(tokenizer: Tokenizer?, size: Int) {
        self.tokenizer = tokenizer
        self.size = size
    }

    var value: TokenVocabulary? {
        guard let tokenizer else { return nil }
        return built.withLock { cached in
            if let cached { return cached }
            let vocabulary = TokenVocabulary(bytes: (0..<size).map { tokenizer.bytes([$0], skipSpecialTokens: true) })
            cached = vocabulary
            return vocabulary
        }
    }
}

/// What a forced tool choice or a response format makes of the output.
enum StructuredChat: Sendable {
    case none
    /// `tool_choice: {"type": "function", "function": {"name": N}}`: the output is N's arguments.
    case namedTool(String, JSONSchemaGrammar)
    /// `tool_choice: "required"`: the output is `[{"name": …, "parameters": {…}}, …]`.
    case requiredTools(JSONSchemaGrammar)

    var grammar: JSONSchemaGrammar? {
        switch self {
        case .none: nil
        case .namedTool(_, let g), .requiredTools(let g): g
        }
    }
}

/// How one chat request's answer is split and shaped: the server's output format, the
/// request's tools and tool_choice, its chat_template_kwargs (which switch thinking) and
/// OpenAI's/vLLM's fields for the message (`tool_calls`, `reasoning_content`, `reasoning`).
struct ChatOutputOptions: Sendable {
    let format: OutputFormat
    let tools: [ToolDefinition]
    let parseToolCalls: Bool
    let templateArguments: TemplateObject
    let includeReasoning: Bool
    let parallelToolCalls: Bool
    /// One id prefix per request; calls are numbered within each choice.
    let idPrefix: String
    let structured: StructuredChat

    /// True when the content itself is constrained (`response_format`): it is then the JSON, not parsed.
    let constrainedContent: Bool

    init(_ body: RequestBody, format: OutputFormat, constrainedContent: Bool = false) throws {
        self.format = format
        self.constrainedContent = constrainedContent
        tools = ToolDefinition.list(fromRequestTools: body["tools"])
        if let t = body["tools"] {
            guard case .array(let items) = t, items.count == tools.count else {
                throw RequestProblem("'tools' must be a list of {\"type\": \"function\", \"function\": {\"name\": …, \"parameters\": {…}}}.", param: "tools")
            }
        }
        var parse = !tools.isEmpty
        var structured = StructuredChat.none
        let parallel = try body.bool("parallel_tool_calls") ?? true
        switch body["tool_choice"] {
        case nil, .string("auto")?: break
        case .string("none")?: parse = false
        case .string("required")?:
            guard !tools.isEmpty else { throw RequestProblem("'tool_choice' required needs 'tools'.", param: "tool_choice") }
            structured = .requiredTools(try Self.requiredToolsGrammar(body["tools"], parallel: parallel))
            parse = false
        case .object(let choice)?:
            guard case .object(let function)? = choice["function"], case .string(let name)? = function["name"] else {
                throw RequestProblem("'tool_choice' must name a function: {\"type\": \"function\", \"function\": {\"name\": …}}.", param: "tool_choice")
            }
            guard let schema = Self.parameters(of: name, in: body["tools"]) else {
                throw RequestProblem("'tool_choice' names '\(name)', which is not in 'tools'.", param: "tool_choice")
            }
            structured = .namedTool(name, try GenerationParameters.grammar(schema, param: "tools"))
            parse = false
        default:
            throw RequestProblem("'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", …}.", param: "tool_choice")
        }
        self.structured = structured
        parseToolCalls = parse
        if case .object(let kwargs)? = body["chat_template_kwargs"] { templateArguments = kwargs } else { templateArguments = TemplateObject() }
        includeReasoning = try body.bool("include_reasoning") ?? true
        parallelToolCalls = parallel
        idPrefix = "call_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(16)
    }

    /// A function's `parameters` schema in the request's tools (an empty object schema when it has none).
    static func parameters(of name: String, in tools: TemplateValue?) -> TemplateValue? {
        guard case .array(let items)? = tools else { return nil }
        for case .object(let tool) in items {
            guard case .object(let function)? = tool["function"], case .string(name)? = function["name"] else { continue }
            return function["parameters"] ?? .object(TemplateObject([("type", .string("object"))]))
        }
        return nil
    }

    /// `[{"name": N, "parameters": <N's schema>}, …]` with at least one call (one at most
    /// without parallel calls), as vLLM constrains `tool_choice: required`.
    static func requiredToolsGrammar(_ tools: TemplateValue?, parallel: Bool) throws -> JSONSchemaGrammar {
        guard case .array(let items)? = tools else { throw RequestProblem("'tools' must be a list.", param: "tools") }
        var alternatives: [TemplateValue] = []
        for case .object(let tool) in items {
            guard case .object(let function)? = tool["function"], case .string(let name)? = function["name"] else { continue }
            let parameters = function["parameters"] ?? .object(TemplateObject([("type", .string("object"))]))
            alternatives.append(.object(TemplateObject([
                ("type", .string("object")),
                ("properties", .object(TemplateObject([("name", .object(TemplateObject([("const", .string(name))]))), ("parameters", parameters)]))),
                ("required", .array([.string("name"), .string("parameters")])), ("additionalProperties", .bool(false)),
            ])))
        }
        var array: [(String, TemplateValue)] = [("type", .string("array")), ("minItems", .int(1)), ("items", .object(TemplateObject([("anyOf", .array(alternatives))])))]
        if !parallel { array.append(("maxItems", .int(1))) }
        return try GenerationParameters.grammar(.object(TemplateObject(array)), param: "tools")
    }

    /// What a harmony model (gpt-oss) writes before constrained output, sent as the end of
    /// the prompt so the constrained tokens come where the model expects them: the final
    /// channel before a response format's JSON, a commentary message to the function before a
    /// forced call's arguments (the headers llama.cpp's gpt-oss grammar forces). Nil for other
    /// formats, whose constrained output starts the answer.
    var constrainedPreamble: String? {
        guard format.harmony != nil else { return nil }
        if constrainedContent { return "<|channel|>final <|constrain|>json<|message|>" }
        if case .namedTool(let name, _) = structured { return "<|channel|>commentary to=functions.\(name) <|constrain|>json<|message|>" }
        return nil
    }

    /// Whether the answer goes through a parser at all (then special tokens stay in its text).
    /// A constrained answer is the JSON itself: it is not parsed.
    var parsesAnything: Bool {
        guard case .none = structured, !constrainedContent else { return false }
        return format.parsesAnything(parseToolCalls: parseToolCalls, templateArguments: templateArguments)
    }

    /// OpenAI's finish reason: `tool_calls` when the model chose to call (a forced named call ends with `stop`).
    func finishReason(_ finish: String, calledTools: Bool) -> String {
        if case .namedTool = structured { return finish }
        return calledTools ? "tool_calls" : finish
    }

    /// The calls a `tool_choice: required` answer spells, or nil when it is not such JSON (cut short).
    func requiredCalls(_ text: String, choice: Int) -> [ParsedToolCall]? {
        guard case .array(let items)? = try? JSONText.parse(Data(text.utf8)) else { return nil }
        let id = makeID(choice: choice)
        var calls: [ParsedToolCall] = []
        for case .object(let call) in items {
            guard case .string(let name)? = call["name"], let parameters = call["parameters"] else { return nil }
            calls.append(ParsedToolCall(id: id(calls.count), name: name, arguments: (try? JSONText.encode(parameters)) ?? "{}"))
        }
        return calls
    }

    func makeID(choice: Int) -> @Sendable (Int) -> String {
        let prefix = idPrefix
        return { "\(prefix)_\(choice)_\($0)" }
    }

    func parse(_ text: String, choice: Int) -> AssistantOutput {
        switch structured {
        case .namedTool(let name, _):
            return AssistantOutput(toolCalls: [ParsedToolCall(id: makeID(choice: choice)(0), name: name, arguments: text)])
        case .requiredTools:
            guard let calls = requiredCalls(text, choice: choice) else { return AssistantOutput(content: text) }
            return AssistantOutput(toolCalls: calls)
        case .none:
            break
        }
        guard parsesAnything else { return AssistantOutput(content: text) }
        var output = AssistantOutputParser.parse(text, format: format, tools: tools, parseToolCalls: parseToolCalls,
                                                 templateArguments: templateArguments, makeID: makeID(choice: choice))
        if !parallelToolCalls { output.toolCalls = Array(output.toolCalls.prefix(1)) }
        if !includeReasoning { output.reasoning = nil }
        return output
    }

    func streamingParser(choice: Int) -> ChatDeltaStream? {
        switch structured {
        case .namedTool(let name, _): return .namedTool(name: name, id: makeID(choice: choice)(0), started: false)
        case .requiredTools: return .requiredTools(text: "", choice: choice)
        case .none: break
        }
        guard parsesAnything else { return nil }
        return .parser(AssistantOutputParser(format: format, tools: tools, parseToolCalls: parseToolCalls,
                                             templateArguments: templateArguments, makeID: makeID(choice: choice)))
    }

    /// The request's choices applied to one streamed delta.
    func filter(_ delta: AssistantDelta) -> AssistantDelta {
        var d = delta
        if !includeReasoning { d.reasoning = nil }
        if !parallelToolCalls { d.toolCalls.removeAll { $0.index > 0 } }
        return d
    }

    /// `message` of a chat completion: content (null when there is none but calls or
    /// reasoning), `reasoning_content` and `reasoning` (vLLM spells both), `tool_calls`.
    func messageObject(_ output: AssistantOutput) -> TemplateObject {
        var message = TemplateObject([("role", .string("assistant")),
                                      ("content", output.content.map { .string($0) } ?? (output.reasoning == nil && output.toolCalls.isEmpty ? .string("") : .none))])
        if let reasoning = output.reasoning {
            message["reasoning_content"] = .string(reasoning)
            message["reasoning"] = .string(reasoning)
        }
        if !output.toolCalls.isEmpty {
            message["tool_calls"] = .array(output.toolCalls.map { call in
                .object(TemplateObject([("id", .string(call.id)), ("type", .string("function")),
                                        ("function", .object(TemplateObject([("name", .string(call.name)), ("arguments", .string(call.arguments))])))]))
            })
        }
        return message
    }

    /// `delta` fields of a streamed chunk. A call's first delta carries `id`, `type` and
    /// `function.name` with `arguments` (at least ""), later ones only argument text.
    func deltaObject(_ delta: AssistantDelta) -> TemplateObject {
        var object = TemplateObject()
        if let reasoning = delta.reasoning {
            object["reasoning_content"] = .string(reasoning)
            object["reasoning"] = .string(reasoning)
        }
        if let content = delta.content { object["content"] = .string(content) }
        if !delta.toolCalls.isEmpty {
            object["tool_calls"] = .array(delta.toolCalls.map { call in
                var function = TemplateObject()
                if let name = call.name { function["name"] = .string(name) }
                function["arguments"] = .string(call.arguments ?? "")
                var o = TemplateObject([("index", .int(call.index))])
                if let id = call.id {
                    o["id"] = .string(id)
                    o["type"] = .string("function")
                }
                o["function"] = .object(function)
                return .object(o)
            })
        }
        return object
    }
}

/// One choice's streamed answer: through the family's parsers, or the pieces of a forced call.
enum ChatDeltaStream: Sendable {
    case parser(AssistantOutputParser)
    /// The text is the named function's arguments: the first piece opens the call.
    case namedTool(name: String, id: String, started: Bool)
    /// The text is a JSON list of calls, sent whole when it ends.
    case requiredTools(text: String, choice: Int)

    mutating func feed(_ piece: String) -> AssistantDelta {
        switch self {
        case .parser(var parser):
            let delta = parser.feed(piece)
            self = .parser(parser)
            return delta
        case .namedTool(let name, let id, let started):
            guard !piece.isEmpty else { return AssistantDelta() }
            self = .namedTool(name: name, id: id, started: true)
            return AssistantDelta(toolCalls: [started ? ToolCallDelta(index: 0, arguments: piece)
                                                      : ToolCallDelta(index: 0, id: id, name: name, arguments: piece)])
        case .requiredTools(let text, let choice):
            self = .requiredTools(text: text + piece, choice: choice)
            return AssistantDelta()
        }
    }

    /// The deltas of the text's last piece and of the end, as one.
    mutating func finish(after tail: String, _ options: ChatOutputOptions) -> AssistantDelta {
        var last = tail.isEmpty ? AssistantDelta() : feed(tail)
        let end = finish(options)
        last.reasoning = [last.reasoning, end.reasoning].compactMap { $0 }.joined().nilIfEmpty
        last.content = [last.content, end.content].compactMap { $0 }.joined().nilIfEmpty
        last.toolCalls += end.toolCalls
        return last
    }

    mutating func finish(_ options: ChatOutputOptions) -> AssistantDelta {
        switch self {
        case .parser(var parser):
            let delta = parser.finish()
            self = .parser(parser)
            return delta
        case .namedTool:
            return AssistantDelta()
        case .requiredTools(let text, let choice):
            guard let calls = options.requiredCalls(text, choice: choice) else { return AssistantDelta(content: text.nilIfEmpty) }
            return AssistantDelta(toolCalls: calls.enumerated().map { i, call in
                ToolCallDelta(index: i, id: call.id, name: call.name, arguments: call.arguments)
            })
        }
    }
}

extension String {
    var nilIfEmpty: String? { isEmpty ? nil : self }
}
