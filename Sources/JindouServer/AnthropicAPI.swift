import Foundation
import Hummingbird
import JindouOutputParsing
import JindouServing
import JindouTemplates
import NIOCore

/// Anthropic's Messages API (`POST /v1/messages`, `/v1/messages/count_tokens`) over the same
/// engine, chat template, parsers and grammars as the OpenAI routes: a request is translated
/// into the chat messages the template renders (tool_use → assistant tool_calls, tool_result
/// → tool messages, thinking → reasoning_content), and the answer's reasoning, text and tool
/// calls come back as `thinking`, `text` and `tool_use` blocks, streamed as Anthropic's events.
enum AnthropicAPI {
    static func register(on router: Hummingbird.Router<APIRequestContext>, serving: ServingContext) {
        router.post("v1/messages") { request, context -> Response in
            await handle(context) { try await messages(request, serving: serving) }
        }
        router.post("v1/messages/count_tokens") { request, context -> Response in
            await handle(context) { try await countTokens(request, serving: serving) }
        }
    }

    // MARK: Translation

    /// The OpenAI-style chat body (messages, tools, tool_choice, sampling) of an Anthropic request.
    static func chatBody(_ body: RequestBody, countingOnly: Bool = false) throws -> TemplateObject {
        var chat = TemplateObject()
        if let model = body["model"] { chat["model"] = model }
        var messages: [TemplateValue] = []
        switch body["system"] {
        case nil: break
        case .string(let text)?: messages.append(message("system", text))
        case .array(let blocks)?: messages.append(message("system", try text(of: blocks, field: "system")))
        default: throw RequestProblem("'system' must be a string or a list of text blocks.", param: "system")
        }
        guard case .array(let turns)? = body["messages"], !turns.isEmpty else {
            throw RequestProblem("'messages' must be a non-empty list.", param: "messages")
        }
        for (i, turn) in turns.enumerated() {
            guard case .object(let m) = turn, case .string(let role)? = m["role"], role == "user" || role == "assistant" else {
                throw RequestProblem("messages.\(i): each message needs 'role' user or assistant.", param: "messages")
            }
            switch m["content"] {
            case .string(let text)?: messages.append(message(role, text))
            case .array(let blocks)?: messages += try translate(blocks, role: role, index: i)
            default: throw RequestProblem("messages.\(i).content must be a string or a list of blocks.", param: "messages")
            }
        }
        chat["messages"] = .array(messages)
        if case .array(let tools)? = body["tools"] {
            chat["tools"] = .array(try tools.enumerated().map { i, tool in
                guard case .object(let t) = tool, case .string(let name)? = t["name"] else {
                    throw RequestProblem("tools.\(i) needs a 'name' (and an 'input_schema').", param: "tools")
                }
                var function = TemplateObject([("name", .string(name))])
                if let description = t["description"] { function["description"] = description }
                function["parameters"] = t["input_schema"] ?? .object(TemplateObject([("type", .string("object"))]))
                return .object(TemplateObject([("type", .string("function")), ("function", .object(function))]))
            })
        }
        if countingOnly { return chat }
        guard case .int(let maxTokens)? = body["max_tokens"], maxTokens >= 1 else {
            throw RequestProblem("'max_tokens' is required: a positive integer.", param: "max_tokens")
        }
        chat["max_tokens"] = .int(maxTokens)
        for key in ["temperature", "top_p", "top_k", "stream"] { if let v = body[key] { chat[key] = v } }
        if let stops = body["stop_sequences"] {
            guard case .array(let list) = stops, list.count <= 4 else {
                throw RequestProblem("'stop_sequences' must be a list of up to 4 strings.", param: "stop_sequences")
            }
            chat["stop"] = .array(list)
        }
        if case .object(let choice)? = body["tool_choice"] {
            let parallel = !(choice["disable_parallel_tool_use"]?.truthy ?? false)
            chat["parallel_tool_calls"] = .bool(parallel)
            switch choice["type"] {
            case .string("auto")?: chat["tool_choice"] = .string("auto")
            case .string("any")?: chat["tool_choice"] = .string("required")
            case .string("none")?: chat["tool_choice"] = .string("none")
            case .string("tool")?:
                guard case .string(let name)? = choice["name"] else {
                    throw RequestProblem("tool_choice of type tool needs a 'name'.", param: "tool_choice")
                }
                chat["tool_choice"] = .object(TemplateObject([("type", .string("function")),
                                                              ("function", .object(TemplateObject([("name", .string(name))])))]))
            default: throw RequestProblem("'tool_choice.type' must be auto, any, tool or none.", param: "tool_choice")
            }
        } else if body["tool_choice"] != nil {
            throw RequestProblem("'tool_choice' must be an object with a 'type'.", param: "tool_choice")
        }
        // Extended thinking switches the template's thinking (Qwen3's enable_thinking, DeepSeek's thinking).
        if case .object(let thinking)? = body["thinking"], case .string(let type)? = thinking["type"] {
            let on = type == "enabled"
            chat["chat_template_kwargs"] = .object(TemplateObject([("enable_thinking", .bool(on)), ("thinking", .bool(on))]))
        }
        return chat
    }

    static func message(_ role: String, _ text: String) -> TemplateValue {
        .object(TemplateObject([("role", .string(role)), ("content", .string(text))]))
    }

    static func text(of blocks: [TemplateValue], field: String) throws -> String {
        try blocks.map { block in
            guard case .object(let b) = block, case .string("text")? = b["type"], case .string(let text)? = b["text"] else {
                throw RequestProblem("'\(field)' blocks must be text blocks.", param: field)
            }
            return text
        }.joined(separator: "\n")
    }

    /// One Anthropic message's blocks as chat messages: a user turn's tool results become
    /// tool messages (before its other content), an assistant turn's tool_use blocks its
    /// tool_calls and its thinking its reasoning_content.
    static func translate(_ blocks: [TemplateValue], role: String, index: Int) throws -> [TemplateValue] {
        var parts: [TemplateValue] = [], texts: [String] = [], toolMessages: [TemplateValue] = []
        var calls: [TemplateValue] = [], reasoning = ""
        var hasImage = false
        for (j, block) in blocks.enumerated() {
            guard case .object(let b) = block, case .string(let type)? = b["type"] else {
                throw RequestProblem("messages.\(index).content.\(j) needs a 'type'.", param: "messages")
            }
            switch type {
            case "text":
                guard case .string(let t)? = b["text"] else { throw RequestProblem("messages.\(index).content.\(j): text blocks need 'text'.", param: "messages") }
                texts.append(t)
                parts.append(.object(TemplateObject([("type", .string("text")), ("text", .string(t))])))
            case "image":
                guard case .object(let source)? = b["source"] else {
                    throw RequestProblem("messages.\(index).content.\(j): image blocks need a 'source'.", param: "messages")
                }
                let url: String
                switch (source["type"], source["media_type"], source["data"], source["url"]) {
                case (.string("base64")?, .string(let media)?, .string(let data)?, _): url = "data:\(media);base64,\(data)"
                case (.string("url")?, _, _, .string(let u)?): url = u
                default: throw RequestProblem("messages.\(index).content.\(j): image source must be base64 (media_type, data) or url.", param: "messages")
                }
                hasImage = true
                parts.append(.object(TemplateObject([("type", .string("image_url")),
                                                     ("image_url", .object(TemplateObject([("url", .string(url))])))])))
            case "tool_use" where role == "assistant":
                guard case .string(let id)? = b["id"], case .string(let name)? = b["name"] else {
                    throw RequestProblem("messages.\(index).content.\(j): tool_use needs 'id' and 'name'.", param: "messages")
                }
                let input = b["input"] ?? .object(TemplateObject())
                calls.append(.object(TemplateObject([("id", .string(id)), ("type", .string("function")),
                                                     ("function", .object(TemplateObject([("name", .string(name)), ("arguments", input)])))])))
            case "tool_result" where role == "user":
                guard case .string(let id)? = b["tool_use_id"] else {
                    throw RequestProblem("messages.\(index).content.\(j): tool_result needs 'tool_use_id'.", param: "messages")
                }
                var content = ""
                switch b["content"] {
                case nil: break
                case .string(let s)?: content = s
                case .array(let inner)?: content = try text(of: inner, field: "messages")
                default: throw RequestProblem("messages.\(index).content.\(j): tool_result content must be text.", param: "messages")
                }
                toolMessages.append(.object(TemplateObject([("role", .string("tool")), ("tool_call_id", .string(id)), ("content", .string(content))])))
            case "thinking" where role == "assistant":
                if case .string(let t)? = b["thinking"] { reasoning += t }
            case "redacted_thinking" where role == "assistant":
                break
            default:
                throw RequestProblem("messages.\(index).content.\(j): '\(type)' blocks are not supported in \(role) messages.", param: "messages")
            }
        }
        var result = toolMessages
        if role == "assistant" {
            var m = TemplateObject([("role", .string("assistant")), ("content", .string(texts.joined()))])
            if !reasoning.isEmpty { m["reasoning_content"] = .string(reasoning) }
            if !calls.isEmpty { m["tool_calls"] = .array(calls) }
            result.append(.object(m))
        } else if !parts.isEmpty {
            result.append(.object(TemplateObject([("role", .string("user")),
                                                  ("content", hasImage ? .array(parts) : .string(texts.joined(separator: "\n")))])))
        }
        return result
    }

    // MARK: Routes

    static func countTokens(_ request: Request, serving: ServingContext) async throws -> Response {
        let body = try RequestBody(try await RequestBodyLimit.collect(request, limit: serving.maximumRequestBytes))
        let chat = RequestBody(object: try chatBody(body, countingOnly: true))
        return OpenAIAPI.json(["input_tokens": .int(try OpenAIAPI.chatPrompt(chat, serving: serving).tokens.count)])
    }

    static func messages(_ request: Request, serving: ServingContext) async throws -> Response {
        let body = try RequestBody(try await RequestBodyLimit.collect(request, limit: serving.maximumRequestBytes))
        let chat = RequestBody(object: try chatBody(body))
        try OpenAIAPI.checkModel(chat, serving)
        let parameters = try GenerationParameters(chat, router: serving.engine.model.anyRouter, chat: true,
                                                  vocabularySize: serving.engine.description.vocabularySize)
        let output = try ChatOutputOptions(chat, format: serving.outputFormat)
        let prompt = try OpenAIAPI.chatPrompt(chat, serving: serving)
        let tokens = prompt.tokens + OpenAIAPI.preamble(output, serving)
        let streams = try await OpenAIAPI.submit(prompt: tokens, multimodal: prompt.multimodal, parameters: parameters,
                                                 defaultMaxTokens: nil, chat: true, output: output, serving: serving)
        let id = "msg_" + String(UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(24))
        guard let events = streams.first else { throw RequestProblem("no sequence") }
        if parameters.stream {
            return streamingResponse(events, id: id, promptTokens: tokens.count, parameters: parameters, output: output, serving: serving)
        }
        var choice = OpenAIAPI.ChoiceText(stops: parameters.stop, tokenizer: serving.text.tokenizer, output: output, serving: serving)
        for try await event in events where choice.consume(event).stopped { break }
        choice.finishText()
        let parsed = output.parse(choice.text, choice: 0)
        var content: [TemplateValue] = []
        if let reasoning = parsed.reasoning {
            content.append(.object(TemplateObject([("type", .string("thinking")), ("thinking", .string(reasoning)), ("signature", .string(""))])))
        }
        if let text = parsed.content, !text.isEmpty { content.append(.object(TemplateObject([("type", .string("text")), ("text", .string(text))]))) }
        for call in parsed.toolCalls {
            content.append(.object(TemplateObject([("type", .string("tool_use")), ("id", .string(toolUseID(call.id))), ("name", .string(call.name)),
                                                   ("input", input(of: call.arguments))])))
        }
        let (reason, sequence) = stopReason(choice, calledTools: !parsed.toolCalls.isEmpty)
        return OpenAIAPI.json(TemplateObject([
            ("id", .string(String(id))), ("type", .string("message")), ("role", .string("assistant")), ("model", .string(serving.modelName)),
            ("content", .array(content)), ("stop_reason", .string(reason)), ("stop_sequence", sequence.map { .string($0) } ?? .none),
            ("usage", usage(tokens.count, choice.completionTokens, cached: choice.cachedTokens)),
        ]))
    }

    static func toolUseID(_ id: String) -> String { "toolu_" + id.replacingOccurrences(of: "call_", with: "") }

    /// A call's arguments as the `input` object (`{}` when the text is not a JSON object, e.g. cut by max_tokens).
    static func input(of arguments: String) -> TemplateValue {
        if case .object(let o)? = try? JSONText.parse(Data(arguments.utf8)) { return .object(o) }
        return .object(TemplateObject())
    }

    static func stopReason(_ choice: OpenAIAPI.ChoiceText, calledTools: Bool) -> (String, String?) {
        if let stop = choice.matcher.matchedStop { return ("stop_sequence", stop) }
        if calledTools { return ("tool_use", nil) }
        return (choice.finish == "length" ? "max_tokens" : "end_turn", nil)
    }

    /// Anthropic's usage: `cache_read_input_tokens` is the prefix cache's share of the input.
    static func usage(_ input: Int, _ output: Int, cached: Int = 0) -> TemplateValue {
        .object(TemplateObject([("input_tokens", .int(input)), ("output_tokens", .int(output)),
                                ("cache_read_input_tokens", .int(cached)), ("cache_creation_input_tokens", .int(0))]))
    }

    /// Server-sent events as Anthropic sends them: message_start, per block content_block_start /
    /// content_block_delta (text_delta, thinking_delta, input_json_delta) / content_block_stop,
    /// then message_delta (stop_reason, usage) and message_stop.
    static func streamingResponse(_ events: AsyncThrowingStream<GenerationEvent, Error>, id: String, promptTokens: Int,
                                  parameters: GenerationParameters, output: ChatOutputOptions, serving: ServingContext) -> Response {
        let body = ResponseBody { writer in
            func send(_ name: String, _ object: TemplateObject) async throws {
                let ordered = TemplateObject([("type", .string(name))] + object.pairs)
                try await writer.write(ByteBuffer(string: "event: \(name)\ndata: " + (try JSONText.encode(.object(ordered))) + "\n\n"))
            }
            try await send("message_start", TemplateObject([("message", .object(TemplateObject([
                ("id", .string(String(id))), ("type", .string("message")), ("role", .string("assistant")), ("model", .string(serving.modelName)),
                ("content", .array([])), ("stop_reason", .none), ("stop_sequence", .none), ("usage", usage(promptTokens, 0)),
            ])))]))
            var choice = OpenAIAPI.ChoiceText(stops: parameters.stop, tokenizer: serving.text.tokenizer, output: output, serving: serving)
            var stream = output.streamingParser(choice: 0)
            var blockIndex = -1
            var open: String?  // "thinking", "text" or "tool_use:N"
            var calledTools = false
            func close() async throws {
                if open != nil { try await send("content_block_stop", TemplateObject([("index", .int(blockIndex))])) }
                open = nil
            }
            func begin(_ kind: String, _ block: TemplateObject) async throws {
                try await close()
                blockIndex += 1
                open = kind
                try await send("content_block_start", TemplateObject([("index", .int(blockIndex)), ("content_block", .object(block))]))
            }
            func deliver(_ delta: AssistantDelta) async throws {
                let d = output.filter(delta)
                if let r = d.reasoning {
                    if open != "thinking" { try await begin("thinking", TemplateObject([("type", .string("thinking")), ("thinking", .string("")), ("signature", .string(""))])) }
                    try await send("content_block_delta", TemplateObject([("index", .int(blockIndex)),
                        ("delta", .object(TemplateObject([("type", .string("thinking_delta")), ("thinking", .string(r))])))]))
                }
                if let c = d.content {
                    if open != "text" { try await begin("text", TemplateObject([("type", .string("text")), ("text", .string(""))])) }
                    try await send("content_block_delta", TemplateObject([("index", .int(blockIndex)),
                        ("delta", .object(TemplateObject([("type", .string("text_delta")), ("text", .string(c))])))]))
                }
                for call in d.toolCalls {
                    if let name = call.name {
                        calledTools = true
                        try await begin("tool_use:\(call.index)", TemplateObject([("type", .string("tool_use")), ("id", .string(toolUseID(call.id ?? ""))),
                                                                                 ("name", .string(name)), ("input", .object(TemplateObject()))]))
                    }
                    if let arguments = call.arguments, !arguments.isEmpty, open == "tool_use:\(call.index)" {
                        try await send("content_block_delta", TemplateObject([("index", .int(blockIndex)),
                            ("delta", .object(TemplateObject([("type", .string("input_json_delta")), ("partial_json", .string(arguments))])))]))
                    }
                }
            }
            do {
                for try await event in events {
                    let (piece, stopped) = choice.consume(event)
                    if !piece.isEmpty {
                        if stream != nil { try await deliver(stream!.feed(piece)) } else { try await deliver(AssistantDelta(content: piece)) }
                    }
                    if stopped { break }
                }
                let tail = choice.finishText()
                if stream != nil {
                    try await deliver(stream!.finish(after: tail, output))
                } else if !tail.isEmpty {
                    try await deliver(AssistantDelta(content: tail))
                }
                try await close()
                let (reason, sequence) = stopReason(choice, calledTools: calledTools)
                try await send("message_delta", TemplateObject([
                    ("delta", .object(TemplateObject([("stop_reason", .string(reason)), ("stop_sequence", sequence.map { .string($0) } ?? .none)]))),
                    ("usage", .object(TemplateObject([("output_tokens", .int(choice.completionTokens))]))),
                ]))
                try await send("message_stop", TemplateObject())
            } catch {
                if error is CancellationError { throw error }
                try await send("error", TemplateObject([("error", .object(TemplateObject([("type", .string("api_error")), ("message", .string("\(error)"))])))]))
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: body)
    }

    // MARK: Errors

    /// Anthropic's error shape: `{"type": "error", "error": {"type", "message"}}`.
    static func handle(_ context: APIRequestContext, _ body: () async throws -> Response) async -> Response {
        do {
            return try await body()
        } catch let problem as RequestProblem {
            let type = switch problem.status {
            case .notFound: "not_found_error"
            case .tooManyRequests: "rate_limit_error"
            case .contentTooLarge: "request_too_large"
            case .serviceUnavailable: "overloaded_error"
            default: "invalid_request_error"
            }
            return OpenAIAPI.json(TemplateObject([("type", .string("error")), ("error", .object(TemplateObject([
                ("type", .string(type)), ("message", .string(problem.message)),
            ])))]), status: problem.status)
        } catch {
            // Size limits, readiness, a full queue: the status is what clients act on.
            return await OpenAIAPI.handle(context) { throw error }
        }
    }
}
