import AsyncHTTPClient
import Foundation
import JindouAdmin
import JindouModel
import JindouRouting
import JindouTemplates
import JindouTestSupport
import JindouTokenizer
import NIOCore
import Testing

/// A `jindoud local` cluster (worker processes + coordinator) serving the OpenAI API.
final class LocalCluster: @unchecked Sendable {
    // @unchecked: set once in init; the Process is only signalled.
    let process: Process
    let url: String
    let fixture: String

    init(fixture: String, workers: Int = 2, extraArguments: [String] = []) throws {
        let jindoud = try Executable("jindoud")
        process = Process()
        process.executableURL = jindoud.url
        process.arguments = ["local", "--model", Fixtures.path(fixture), "--workers", String(workers), "--listen", "127.0.0.1:0",
                             "--log-level", "error"] + extraArguments
        let stdout = Pipe()
        process.standardOutput = stdout
        try process.run()
        guard let line = readLine(stdout.fileHandleForReading), line.hasPrefix("ready http") else {
            process.terminate()
            throw HarnessError("jindoud local did not become ready")
        }
        url = String(line.dropFirst("ready ".count))
        self.fixture = fixture
    }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }

    var client: AdminClient { get throws { try AdminClient(url, timeoutSeconds: 60) } }

    /// POSTs a JSON body; returns (status, parsed body).
    func post(_ path: String, _ body: String) async throws -> (Int, TemplateObject) {
        do {
            let data = try await client.send("POST", path, body: Data(body.utf8))
            guard case .object(let o) = try JSONText.parse(data) else { throw HarnessError("not an object") }
            return (200, o)
        } catch AdminClientError.status(let code, let message) {
            return (code, TemplateObject([("message", .string(message))]))
        }
    }

    /// The streamed text of a request (SSE deltas joined: reasoning, then content, as generated).
    func streamedText(_ path: String, _ body: String) async throws -> String {
        var text = ""
        for try await payload in try client.events(path, body: Data(body.utf8)) {
            guard case .object(let chunk) = try JSONText.parse(payload), case .array(let choices)? = chunk["choices"] else { continue }
            for case .object(let choice) in choices {
                if case .object(let delta)? = choice["delta"] {
                    if case .string(let s)? = delta["reasoning_content"] { text += s }
                    if case .string(let s)? = delta["content"] { text += s }
                }
                if case .string(let s)? = choice["text"] { text += s }
            }
        }
        return text
    }

    /// A metric's value from /metrics.
    func metric(_ name: String) async throws -> Double? {
        let text = String(decoding: try await client.send("GET", "metrics", body: nil), as: UTF8.self)
        for line in text.split(separator: "\n") where line.hasPrefix(name + " ") {
            return Double(line.split(separator: " ").last ?? "")
        }
        return nil
    }
}

/// The OpenAI-compatible API on a local cluster: batching, elastic experts, errors, the
/// official Python client.
@Suite("OpenAI-compatible serving", .serialized)
struct OpenAIServingTests {
    let fixture = "qwen3-moe-tiny"

    func textOf(_ result: (Int, TemplateObject), chat: Bool) -> String? {
        guard case .array(let choices)? = result.1["choices"], case .object(let choice)? = choices.first else { return nil }
        if chat, case .object(let message)? = choice["message"] { return message["content"]?.text }
        return choice["text"]?.text
    }

    @Test func sixteenConcurrentStreamsEqualEachAloneAndShareSteps() async throws {
        let cluster = try LocalCluster(fixture: fixture)
        defer { cluster.stop() }
        let bodies: [(String, String)] = (0..<16).map { i in
            i % 2 == 0
                ? ("v1/chat/completions", #"{"model": "qwen3-moe-tiny", "messages": [{"role": "user", "content": "Question \#(i): what is \#(i * 7)?"}], "max_tokens": \#(10 + i), "temperature": 0, "stream": true}"#)
                : ("v1/completions", #"{"model": "qwen3-moe-tiny", "prompt": "Story \#(i) begins", "max_tokens": \#(10 + i), "temperature": 0, "stream": true, "experts_per_token": \#(1 + i % 4)}"#)
        }
        var alone: [String] = []
        for (path, body) in bodies { alone.append(try await cluster.streamedText(path, body)) }
        let before = try await cluster.metric("jindou_batch_sequences_sum") ?? 0
        let stepsBefore = try await cluster.metric("jindou_batch_sequences_count") ?? 0
        let together = try await withThrowingTaskGroup(of: (Int, String).self) { group in
            for (i, (path, body)) in bodies.enumerated() { group.addTask { (i, try await cluster.streamedText(path, body)) } }
            var out = [String](repeating: "", count: bodies.count)
            for try await (i, text) in group { out[i] = text }
            return out
        }
        #expect(together == alone)
        #expect(alone.allSatisfy { !$0.isEmpty })
        let sequences = try await cluster.metric("jindou_batch_sequences_sum")! - before
        let steps = try await cluster.metric("jindou_batch_sequences_count")! - stepsBefore
        #expect(sequences / steps > 2, "mean batch \(sequences / steps) sequences per step: requests were not batched")
    }

    @Test func expertsPerTokenChangesOutputsLikeTheEngine() async throws {
        let cluster = try LocalCluster(fixture: fixture)
        defer { cluster.stop() }
        let engine = try await EngineCache.shared.engine(fixture)
        let tokenizer = try Tokenizer(contentsOf: Fixtures.path(fixture) + "/tokenizer.json")
        let prompt = [5, 17, 200, 41, 9, 88]
        var outputs: Set<String> = []
        for (json, k) in [("null", ExpertsPerToken.configured), ("1", .fixed(1)), ("4", .fixed(4)), ("8", .fixed(8)), (#""auto:0.6""#, .auto(threshold: 0.6))] {
            let result = try await cluster.post("v1/completions", #"{"model": "qwen3-moe-tiny", "prompt": \#(prompt), "max_tokens": 8, "temperature": 0, "experts_per_token": \#(json)}"#)
            #expect(result.0 == 200)
            let expected = try await engine.generate(GenerationRequest(promptTokenIDs: prompt, maxNewTokens: 8, expertsPerToken: k, stopTokenIDs: []))
            let expectedText = tokenizer.decode(expected.tokenIDs, skipSpecialTokens: true)
            #expect(textOf(result, chat: false) == expectedText, "experts_per_token \(json)")
            outputs.insert(expectedText)
        }
        #expect(outputs.count > 1, "experts_per_token never changed the output")
    }

    /// vLLM's `stop_token_ids`: the greedy run stops at the first occurrence of a chosen
    /// token, which is counted and, not being a special token, printed (as vLLM does), with
    /// finish_reason "stop".
    @Test func stopTokenIDsEndTheChoice() async throws {
        let cluster = try LocalCluster(fixture: fixture)
        defer { cluster.stop() }
        let engine = try await EngineCache.shared.engine(fixture)
        let prompt = [5, 17, 200, 41, 9, 88]
        let greedy = try await engine.generate(GenerationRequest(promptTokenIDs: prompt, maxNewTokens: 8, stopTokenIDs: [])).tokenIDs
        let at = try #require((1..<greedy.count).first { !greedy[..<$0].contains(greedy[$0]) })
        let result = try await cluster.post("v1/completions", #"{"model": "qwen3-moe-tiny", "prompt": \#(prompt), "max_tokens": 8, "temperature": 0, "ignore_eos": true, "stop_token_ids": [\#(greedy[at])]}"#)
        #expect(result.0 == 200)
        let usage: TemplateObject? = { if case .object(let u)? = result.1["usage"] { return u } else { return nil } }()
        #expect(usage?["completion_tokens"]?.text == "\(at + 1)")
        let tokenizer = try Tokenizer(contentsOf: Fixtures.path(fixture) + "/tokenizer.json")
        #expect(textOf(result, chat: false) == tokenizer.decode(Array(greedy[...at]), skipSpecialTokens: true))
        guard case .array(let choices)? = result.1["choices"], case .object(let choice)? = choices.first else {
            Issue.record("no choice")
            return
        }
        #expect(choice["finish_reason"]?.text == "stop")
    }

    /// `x-request-id` comes back on the response: the client's when it sent a valid one, else
    /// a fresh one per request (also on error answers of the API's routes).
    @Test func requestIDsAreEchoed() async throws {
        let cluster = try LocalCluster(fixture: fixture)
        defer { cluster.stop() }
        let client = HTTPClient.shared
        func requestID(_ path: String, sending id: String?, body: String? = nil) async throws -> String? {
            var request = HTTPClientRequest(url: cluster.url + "/" + path)
            if let body {
                request.method = .POST
                request.body = .bytes(ByteBuffer(string: body))
            }
            if let id { request.headers.add(name: "x-request-id", value: id) }
            let response = try await client.execute(request, timeout: .seconds(30))
            _ = try await response.body.collect(upTo: 1 << 20)
            return response.headers.first(name: "x-request-id")
        }
        #expect(try await requestID("v1/models", sending: "lb-7f3a-42") == "lb-7f3a-42")
        let fresh = try #require(try await requestID("v1/models", sending: nil))
        #expect(!fresh.isEmpty && fresh != "lb-7f3a-42")
        #expect(try await requestID("v1/models", sending: nil) != fresh)
        // An id with spaces is not trusted; the answer carries a new one. Errors carry one too.
        let replaced = try #require(try await requestID("v1/models", sending: "two words"))
        #expect(replaced != "two words" && !replaced.isEmpty)
        #expect(try await requestID("v1/completions", sending: "x-1", body: "{not json") == "x-1")  // a 400
    }

    @Test func badRequestsGetOpenAIErrorsAndTheServerStaysUp() async throws {
        let cluster = try LocalCluster(fixture: fixture, extraArguments: ["--max-model-len", "64"])
        defer { cluster.stop() }
        let cases: [(String, String, Int, String)] = [
            ("v1/completions", #"{"model": "other", "prompt": "x"}"#, 404, "does not exist"),
            ("v1/completions", #"{"model": "qwen3-moe-tiny", "prompt": "x", "max_tokens": 100}"#, 400, "maximum context length is 64"),
            ("v1/completions", #"{"model": "qwen3-moe-tiny", "prompt": "x", "temperature": -1}"#, 400, "temperature"),
            ("v1/completions", #"{"model": "qwen3-moe-tiny", "prompt": "x", "experts_per_token": 99}"#, 400, "experts_per_token"),
            ("v1/completions", #"{"model": "qwen3-moe-tiny", "prompt": "x", "n": 17}"#, 400, "'n' must be an integer in 1…16"),
            ("v1/completions", #"{"model": "qwen3-moe-tiny", "prompt": "x", "logit_bias": {"999999": 5}}"#, 400, "not a token id"),
            ("v1/completions", #"{"model": "qwen3-moe-tiny", "prompt": "x", "logit_bias": {"5": 101}}"#, 400, "-100…100"),
            ("v1/chat/completions", #"{"model": "qwen3-moe-tiny", "messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}"#,
             400, "'top_logprobs' needs 'logprobs': true"),
            ("v1/completions", #"{"model": "qwen3-moe-tiny", "prompt": "x", "logprobs": 21}"#, 400, "logprobs"),
            ("v1/completions", #"{"model": "qwen3-moe-tiny", "prompt": "x", "presence_penalty": 3}"#, 400, "presence_penalty"),
            ("v1/completions", #"{"model": "qwen3-moe-tiny", "prompt": "x", "echo": true}"#, 400, "'echo' is not supported"),
            ("v1/completions", #"{"model": "qwen3-moe-tiny", "prompt": "x", "stop_token_ids": [999999]}"#, 400, "stop_token_ids"),
            ("v1/completions", #"{"model": "qwen3-moe-tiny", "prompt": [1, 999999]}"#, 400, "out of range"),
            ("v1/chat/completions", #"{"model": "qwen3-moe-tiny", "messages": []}"#, 400, "messages"),
            ("v1/chat/completions", #"{"model": "qwen3-moe-tiny", "messages": [{"content": "no role"}]}"#, 400, "role"),
            ("v1/chat/completions", #"{"model": "qwen3-moe-tiny", "messages": [{"role": "user", "content": "x"}], "stop": 5}"#, 400, "stop"),
            ("v1/completions", #"{"model": "qwen3-moe-tiny", "prompt": "x""#, 400, "JSON"),
            ("v1/completions", #"["not", "an", "object"]"#, 400, "JSON object"),
            // Constraints Jindou cannot enforce are refused, not silently ignored (free text with status 200).
            ("v1/chat/completions", #"{"model": "qwen3-moe-tiny", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string", "format": "date"}}}}"#,
             400, "'format' is not supported"),
            ("v1/completions", #"{"model": "qwen3-moe-tiny", "prompt": "x", "guided_regex": "a+"}"#, 400, "guided_regex"),
        ]
        for (path, body, status, text) in cases {
            let (code, object) = try await cluster.post(path, body)
            #expect(code == status, "\(body)")
            #expect(object["message"]?.text.contains(text) == true, "\(body): \(object["message"]?.text ?? "")")
        }
        let ok = try await cluster.post("v1/chat/completions", #"{"model": "qwen3-moe-tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stop": ["zzz"], "response_format": {"type": "text"}}"#)
        #expect(ok.0 == 200)
        let usage: TemplateObject? = { if case .object(let u)? = ok.1["usage"] { return u } else { return nil } }()
        #expect(usage?["completion_tokens"]?.text == "3")
    }

    @Test func aDisconnectedStreamStopsGenerating() async throws {
        let cluster = try LocalCluster(fixture: fixture)
        defer { cluster.stop() }
        let client = try cluster.client
        let body = Data(#"{"model": "qwen3-moe-tiny", "prompt": "x", "max_tokens": 240, "stream": true}"#.utf8)
        for try await _ in client.events("v1/completions", body: body) { break }  // read one chunk, hang up
        try await eventually(.seconds(60), "the abandoned sequence is dropped") {
            try await cluster.metric("jindou_running_sequences") == 0
        }
        let generated = try await cluster.metric("jindou_generation_tokens_total") ?? 0
        #expect(generated < 240, "generation ran to the end for a client that left")
    }

    @Test func aFullQueueAnswers429() async throws {
        let cluster = try LocalCluster(fixture: fixture, workers: 1, extraArguments: ["--max-sequences", "1", "--max-queued", "0"])
        defer { cluster.stop() }
        let body = #"{"model": "qwen3-moe-tiny", "prompt": "x", "max_tokens": 200, "temperature": 0}"#
        let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<4 { group.addTask { try await cluster.post("v1/completions", body).0 } }
            var all: [Int] = []
            for try await s in group { all.append(s) }
            return all
        }
        #expect(statuses.contains(200) && statuses.contains(429), "\(statuses)")
    }

    /// Finds a Python with the `openai` package (JINDOU_PYTHON, or python3).
    static let python = pythonImporting("openai, jsonschema, anthropic, openapi_spec_validator")

    static let openAIClientAvailable = python != nil || ProcessInfo.processInfo.environment["JINDOU_REQUIRE_OPENAI"] == "1"

    /// Runs a client check script (tools/*_check.py) against a fresh local cluster of `fixture`
    /// (by default the bundled model with room for Qwen3's tool preamble, longer than its 256
    /// positions), passing it the cluster's URL and `argument` (by default the fixture's name).
    func runClientCheck(_ script: String, fixture: String? = nil, workers: Int = 2,
                        clusterArguments: [String] = ["--max-model-len", "1024"], argument: String? = nil) async throws {
        let python = try #require(Self.python, "JINDOU_REQUIRE_OPENAI=1 but no Python with openai, anthropic, jsonschema and openapi-spec-validator was found")
        let model = fixture ?? self.fixture
        let cluster = try LocalCluster(fixture: model, workers: workers, extraArguments: clusterArguments)
        defer { cluster.stop() }
        let run = Process()
        run.executableURL = URL(fileURLWithPath: python)
        run.arguments = [Fixtures.repositoryRoot + "/tools/" + script, cluster.url, argument ?? model]
        let out = Pipe()
        run.standardOutput = out
        try run.run()
        let output = out.fileHandleForReading.readDataToEndOfFile()
        run.waitUntilExit()
        #expect(run.terminationStatus == 0, "\(String(decoding: output, as: UTF8.self))")
    }

    /// The official anthropic client against the Messages API.
    @Test(.enabled(if: openAIClientAvailable, "needs a Python with the anthropic package (set JINDOU_PYTHON)"))
    func theOfficialAnthropicClientWorksUnmodified() async throws {
        try await runClientCheck("anthropic_client_check.py")
    }

    /// The served /openapi.json is a valid OpenAPI 3.1 document (openapi-spec-validator).
    @Test(.enabled(if: openAIClientAvailable, "needs a Python with openapi-spec-validator (set JINDOU_PYTHON)"))
    func theServedOpenAPIDocumentIsValid() async throws {
        try await runClientCheck("openapi_check.py")
    }

    @Test(.enabled(if: openAIClientAvailable, "needs a Python with the openai package (set JINDOU_PYTHON)"))
    func theOfficialOpenAIClientWorksUnmodified() async throws {
        try await runClientCheck("openai_client_check.py")
    }

    /// Kimi-K2.5 image chats from the official client (data: URLs) on a 2-worker cluster give
    /// transformers' greedy text.
    @Test(.enabled(if: openAIClientAvailable, "needs a Python with the openai package (set JINDOU_PYTHON)"))
    func theOfficialOpenAIClientGetsTransformersTextForImages() async throws {
        try await runClientCheck("openai_image_check.py", fixture: "kimi-k25-tiny", clusterArguments: ["--reasoning-parser", "none"],
                                 argument: Fixtures.path("kimi-k25-tiny"))
    }
}
