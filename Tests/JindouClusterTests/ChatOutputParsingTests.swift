import Foundation
import JindouGrammar
import JindouOutputParsing
import JindouTemplates
import JindouTestSupport
import Testing

/// Reasoning and tool-call parsing through the real server: `jindoud local` on the bundled
/// Qwen3 fixture (its template thinks unless `enable_thinking` is false, and offers tools
/// as `<tool_call>` JSON), compared with the parsers applied to the raw text the same
/// prompt gives as a plain completion.
@Suite("Chat answers split into reasoning, content and tool calls", .serialized)
struct ChatOutputParsingTests {
    let fixture = "qwen3-moe-tiny"
    static let tools = #"[{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]"#

    /// The raw greedy text (special tokens kept, as the parsers see it) of a chat request's prompt.
    func rawText(_ cluster: LocalCluster, messages: String, kwargs: String, tools: String = "null", maxTokens: Int,
                 model: String? = nil) async throws -> String {
        let fixture = model ?? fixture
        let (status, tokenized) = try await cluster.post("tokenize", #"{"messages": \#(messages), "chat_template_kwargs": \#(kwargs), "tools": \#(tools)}"#)
        #expect(status == 200, "\(tokenized)")
        guard case .array(let ids)? = tokenized["tokens"] else { throw HarnessError("no tokens") }
        let prompt = try JSONText.encode(.array(ids))
        let (_, completion) = try await cluster.post("v1/completions",
            #"{"model": "\#(fixture)", "prompt": \#(prompt), "max_tokens": \#(maxTokens), "temperature": 0, "skip_special_tokens": false}"#)
        guard case .array(let choices)? = completion["choices"], case .object(let choice)? = choices.first,
              case .string(let text)? = choice["text"] else { throw HarnessError("no completion text") }
        return text
    }

    func message(_ answer: TemplateObject) -> TemplateObject? {
        guard case .array(let choices)? = answer["choices"], case .object(let choice)? = choices.first,
              case .object(let message)? = choice["message"] else { return nil }
        return message
    }

    func string(_ o: TemplateObject?, _ key: String) -> String? {
        if case .string(let s)? = o?[key] { return s }
        return nil
    }

    /// Streams a chat request and joins its deltas' reasoning and content.
    func streamed(_ cluster: LocalCluster, _ body: String) async throws -> (reasoning: String, content: String, finish: String?) {
        var reasoning = "", content = "", finish: String?
        for try await payload in try cluster.client.events("v1/chat/completions", body: Data(body.utf8)) {
            guard case .object(let chunk) = try JSONText.parse(payload), case .array(let choices)? = chunk["choices"] else { continue }
            for case .object(let choice) in choices {
                if case .object(let delta)? = choice["delta"] {
                    reasoning += string(delta, "reasoning_content") ?? ""
                    content += string(delta, "content") ?? ""
                }
                if case .string(let f)? = choice["finish_reason"] { finish = f }
            }
        }
        return (reasoning, content, finish)
    }

    @Test("Thinking on: the answer's reasoning and content are the qwen3 parser's split of the raw text, streamed or not")
    func reasoningIsSplit() async throws {
        let cluster = try LocalCluster(fixture: fixture)
        defer { cluster.stop() }
        let messages = #"[{"role": "user", "content": "Think about primes."}]"#
        let raw = try await rawText(cluster, messages: messages, kwargs: "{}", maxTokens: 12)
        let format = try OutputFormat.named(toolCallParser: nil, reasoningParser: "qwen3")
        let expected = AssistantOutputParser.parse(raw, format: format, tools: [], parseToolCalls: false, makeID: { "\($0)" })
        let body = #"{"model": "\#(fixture)", "messages": \#(messages), "max_tokens": 12, "temperature": 0"#
        let (status, answer) = try await cluster.post("v1/chat/completions", body + "}")
        #expect(status == 200)
        let m = message(answer)
        #expect(expected.reasoning != nil)
        #expect(string(m, "reasoning_content") == expected.reasoning)
        #expect(string(m, "reasoning") == expected.reasoning)
        #expect(string(m, "content") == expected.content)
        let s = try await streamed(cluster, body + #", "stream": true}"#)
        #expect(s.reasoning == expected.reasoning ?? "")
        #expect(s.content == expected.content ?? "")
    }

    @Test("Thinking off, tool_choice none or --reasoning-parser none: the content is the raw text")
    func noSplitWhenNotThinking() async throws {
        let messages = #"[{"role": "user", "content": "Weather?"}]"#
        // Qwen3's tool preamble alone is longer than the fixture's 256 positions.
        let cluster = try LocalCluster(fixture: fixture, extraArguments: ["--max-model-len", "1024"])
        do {
            defer { cluster.stop() }
            let off = #"{"enable_thinking": false}"#
            let raw = try await rawText(cluster, messages: messages, kwargs: off, tools: Self.tools, maxTokens: 10)
            let format = try OutputFormat.named(toolCallParser: "hermes", reasoningParser: "qwen3")
            // tool_choice none: no tool parsing, thinking off: no reasoning.
            let (noneStatus, none) = try await cluster.post("v1/chat/completions",
                #"{"model": "\#(fixture)", "messages": \#(messages), "max_tokens": 10, "temperature": 0, "chat_template_kwargs": \#(off), "tools": \#(Self.tools), "tool_choice": "none"}"#)
            #expect(noneStatus == 200, "\(none)")
            #expect(string(message(none), "content") == raw)
            #expect(message(none)?["reasoning_content"] == nil)
            // tool_choice auto: the hermes parser's reading of the same text.
            let tools = ToolDefinition.list(fromRequestTools: try JSONText.parse(Data(Self.tools.utf8)))
            let expected = AssistantOutputParser.parse(raw, format: format, tools: tools, parseToolCalls: true,
                                                       templateArguments: TemplateObject([("enable_thinking", .bool(false))]), makeID: { "\($0)" })
            let (_, auto) = try await cluster.post("v1/chat/completions",
                #"{"model": "\#(fixture)", "messages": \#(messages), "max_tokens": 10, "temperature": 0, "chat_template_kwargs": \#(off), "tools": \#(Self.tools)}"#)
            #expect(string(message(auto), "content") == expected.content)
            #expect(message(auto)?["tool_calls"] == nil || !expected.toolCalls.isEmpty)
        }
        let plain = try LocalCluster(fixture: fixture, extraArguments: ["--reasoning-parser", "none"])
        defer { plain.stop() }
        let raw = try await rawText(plain, messages: messages, kwargs: "{}", maxTokens: 10)
        let (_, answer) = try await plain.post("v1/chat/completions",
            #"{"model": "\#(fixture)", "messages": \#(messages), "max_tokens": 10, "temperature": 0}"#)
        #expect(string(message(answer), "content") == raw)
        #expect(message(answer)?["reasoning_content"] == nil)
    }

    @Test("gpt-oss: the answer is the harmony parser's reading of the raw text (channels, calls), streamed or not")
    func harmonyChannels() async throws {
        let model = "gpt-oss-tiny"
        let cluster = try LocalCluster(fixture: model, extraArguments: ["--max-model-len", "1024"])
        defer { cluster.stop() }
        let messages = #"[{"role": "user", "content": "Weather in Paris?"}]"#
        let raw = try await rawText(cluster, messages: messages, kwargs: "{}", tools: Self.tools, maxTokens: 16, model: model)
        let format = try OutputFormat.named(toolCallParser: "openai", reasoningParser: "openai_gptoss")
        let tools = ToolDefinition.list(fromRequestTools: try JSONText.parse(Data(Self.tools.utf8)))
        let expected = AssistantOutputParser.parse(raw, format: format, tools: tools, parseToolCalls: true, makeID: { "\($0)" })
        let body = #"{"model": "\#(model)", "messages": \#(messages), "max_tokens": 16, "temperature": 0, "tools": \#(Self.tools)"#
        let (status, answer) = try await cluster.post("v1/chat/completions", body + "}")
        #expect(status == 200, "\(answer)")
        let m = message(answer)
        #expect(string(m, "reasoning_content") == expected.reasoning)
        #expect(string(m, "content") == (expected.content ?? (expected.reasoning == nil && expected.toolCalls.isEmpty ? "" : nil)))
        // Harmony markers never reach the content.
        #expect(!(string(m, "content") ?? "").contains("<|channel|>") || expected.content?.contains("<|channel|>") == true)
        let s = try await streamed(cluster, body + #", "stream": true}"#)
        #expect(s.reasoning == expected.reasoning ?? "")
        #expect(s.content == expected.content ?? "")
        // History sent back with vLLM's reasoning_content reaches the template's `thinking` (ChatTemplate aliases the fields as transformers does).
        func promptTokens(_ reasoning: String) async throws -> Int {
            let history = #"[{"role": "user", "content": "Weather in Paris?"}, {"role": "assistant", "content": null, \#(reasoning) "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]}, {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]"#
            let (status, tokenized) = try await cluster.post("tokenize", #"{"messages": \#(history), "tools": \#(Self.tools)}"#)
            #expect(status == 200, "\(tokenized)")
            guard case .array(let ids)? = tokenized["tokens"] else { return 0 }
            return ids.count
        }
        #expect(try await promptTokens(#""reasoning_content": "I should look up the weather in Paris for the user.","#) > (try await promptTokens("")))

        // Constrained answers come after the header gpt-oss writes first, sent as the prompt's end:
        // the final channel for a response format, a commentary message to the function for a forced call.
        let schema = #"{"type": "object", "properties": {"city": {"enum": ["Paris", "Oslo"]}}, "required": ["city"], "additionalProperties": false}"#
        func usagePrompt(_ answer: TemplateObject) -> Int? {
            if case .object(let usage)? = answer["usage"], case .int(let n)? = usage["prompt_tokens"] { return n }
            return nil
        }
        func headerTokens(_ text: String) async throws -> Int {
            let (_, tokenized) = try await cluster.post("tokenize", #"{"prompt": "\#(text)"}"#)
            guard case .array(let ids)? = tokenized["tokens"] else { return -1 }
            return ids.count
        }
        let plain = try await cluster.post("v1/chat/completions", body + "}").1
        let (formatStatus, formatted) = try await cluster.post("v1/chat/completions",
            body + #", "response_format": {"type": "json_schema", "json_schema": {"name": "c", "schema": \#(schema)}}}"#)
        #expect(formatStatus == 200, "\(formatted)")
        let content = string(message(formatted), "content") ?? ""
        #expect(content.hasPrefix("{") && content.contains("\"city\""), "the JSON itself, no header: \(content)")
        #expect(usagePrompt(formatted).map { $0 - usagePrompt(plain)! } == (try await headerTokens("<|channel|>final <|constrain|>json<|message|>")))
        let (forcedStatus, forced) = try await cluster.post("v1/chat/completions",
            body + #", "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}"#)
        #expect(forcedStatus == 200, "\(forced)")
        #expect(usagePrompt(forced).map { $0 - usagePrompt(plain)! }
                == (try await headerTokens("<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>")))
    }

    @Test("Bad tool choices, unknown functions, unsupported schemas and malformed tools are refused with 400")
    func refusedToolChoices() async throws {
        let cluster = try LocalCluster(fixture: fixture, extraArguments: ["--max-model-len", "1024"])
        defer { cluster.stop() }
        let base = #""model": "\#(fixture)", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2, "tools": \#(Self.tools)"#
        for (extra, param) in [(#""tool_choice": {"type": "function", "function": {"name": "nope"}}"#, "tool_choice"),
                               (#""tool_choice": 3"#, "tool_choice"),
                               (#""response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string", "minimum": 1}}}"#, "response_format"),
                               (#""response_format": {"type": "yaml"}"#, "response_format")] {
            let (status, body) = try await cluster.post("v1/chat/completions", "{\(base), \(extra)}")
            #expect(status == 400, "\(extra)")
            #expect(string(body, "message")?.contains(param) ?? false, "\(body)")
        }
        let (status, _) = try await cluster.post("v1/chat/completions",
            #"{"model": "\#(fixture)", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2, "tools": [{"type": "function"}]}"#)
        #expect(status == 400)
    }

    @Test("Constrained answers are values of their schema: response_format content and a forced call's arguments, streamed as sent whole")
    func constrainedAnswersFollowTheirSchemas() async throws {
        let cluster = try LocalCluster(fixture: fixture, extraArguments: ["--max-model-len", "1024"])
        defer { cluster.stop() }
        let schema = #"{"type": "object", "properties": {"ok": {"type": "boolean"}, "n": {"enum": [1, 2, 3]}}, "required": ["ok", "n"], "additionalProperties": false}"#
        let grammar = try JSONSchemaGrammar(schema: try JSONText.parse(Data(schema.utf8)))
        func accepted(_ text: String?) -> Bool {
            guard let text else { return false }
            var matcher = JSONSchemaMatcher(grammar)
            return matcher.feed(Array(text.utf8)) && matcher.isComplete
        }
        let (_, answer) = try await cluster.post("v1/chat/completions",
            #"{"model": "\#(fixture)", "messages": [{"role": "user", "content": "JSON?"}], "max_tokens": 60, "temperature": 0, "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": \#(schema)}}}"#)
        #expect(accepted(string(message(answer), "content")), "\(answer)")
        let tools = #"[{"type": "function", "function": {"name": "check", "parameters": \#(schema)}}]"#
        let body = #"{"model": "\#(fixture)", "messages": [{"role": "user", "content": "Call it."}], "max_tokens": 60, "temperature": 0, "tools": \#(tools), "tool_choice": {"type": "function", "function": {"name": "check"}}"#
        let (_, forced) = try await cluster.post("v1/chat/completions", body + "}")
        guard case .array(let calls)? = message(forced)?["tool_calls"], case .object(let call)? = calls.first,
              case .object(let function)? = call["function"] else {
            Issue.record("no tool call in \(forced)")
            return
        }
        #expect(string(function, "name") == "check")
        #expect(accepted(string(function, "arguments")))
        var streamedArguments = "", names: [String] = []
        for try await payload in try cluster.client.events("v1/chat/completions", body: Data((body + #", "stream": true}"#).utf8)) {
            guard case .object(let chunk) = try JSONText.parse(payload), case .array(let choices)? = chunk["choices"] else { continue }
            for case .object(let choice) in choices {
                guard case .object(let delta)? = choice["delta"], case .array(let deltas)? = delta["tool_calls"] else { continue }
                for case .object(let d) in deltas {
                    guard case .object(let f)? = d["function"] else { continue }
                    if let name = string(f, "name") { names.append(name) }
                    streamedArguments += string(f, "arguments") ?? ""
                }
            }
        }
        #expect(names == ["check"])
        #expect(streamedArguments == string(function, "arguments"))
    }
}
