import Foundation
import JindouOutputParsing
import JindouTemplates

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

    init(_ body: RequestBody, format: OutputFormat) throws {
        self.format = format
        tools = ToolDefinition.list(fromRequestTools: body["tools"])
        if let t = body["tools"] {
            guard case .array(let items) = t, items.count == tools.count else {
                throw RequestProblem("'tools' must be a list of {\"type\": \"function\", \"function\": {\"name\": …, \"parameters\": {…}}}.", param: "tools")
            }
        }
        var parse = !tools.isEmpty
        switch body["tool_choice"] {
        case nil, .string("auto")?: break
        case .string("none")?: parse = false
        case .string("required")?, .object?:
            throw RequestProblem("'tool_choice' required or a named function needs constrained decoding, which is not supported yet; use \"auto\" or \"none\".",
                                 param: "tool_choice")
        default:
            throw RequestProblem("'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", …}.", param: "tool_choice")
        }
        parseToolCalls = parse
        if case .object(let kwargs)? = body["chat_template_kwargs"] { templateArguments = kwargs } else { templateArguments = TemplateObject() }
        includeReasoning = try body.bool("include_reasoning") ?? true
        parallelToolCalls = try body.bool("parallel_tool_calls") ?? true
        idPrefix = "call_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(16)
    }

    /// Whether the answer goes through a parser at all (then special tokens stay in its text).
    var parsesAnything: Bool {
        (format.reasoning?.thinks(templateArguments) ?? false) || (parseToolCalls && format.toolCalls != nil)
    }

    private func makeID(choice: Int) -> @Sendable (Int) -> String {
        let prefix = idPrefix
        return { "\(prefix)_\(choice)_\($0)" }
    }

    func parse(_ text: String, choice: Int) -> AssistantOutput {
        guard parsesAnything else { return AssistantOutput(content: text) }
        var output = AssistantOutputParser.parse(text, format: format, tools: tools, parseToolCalls: parseToolCalls,
                                                 templateArguments: templateArguments, makeID: makeID(choice: choice))
        if !parallelToolCalls { output.toolCalls = Array(output.toolCalls.prefix(1)) }
        if !includeReasoning { output.reasoning = nil }
        return output
    }

    func streamingParser(choice: Int) -> AssistantOutputParser? {
        guard parsesAnything else { return nil }
        return AssistantOutputParser(format: format, tools: tools, parseToolCalls: parseToolCalls,
                                     templateArguments: templateArguments, makeID: makeID(choice: choice))
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

extension String {
    var nilIfEmpty: String? { isEmpty ? nil : self }
}
