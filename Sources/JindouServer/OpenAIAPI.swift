import Foundation
import Hummingbird
import JindouModel
import JindouRouting
import JindouServing
import JindouTemplates
import JindouTokenizer
import NIOCore

/// What the OpenAI-compatible endpoints serve with.
public struct ServingContext: Sendable {
    public let engine: InferenceEngine
    public let scheduler: BatchScheduler
    public let text: ServingText
    /// The `model` name clients use (`--served-model-name`, default: the directory's name).
    public let modelName: String
    /// Prompt + completion tokens one request may use.
    public let maximumModelLength: Int
    /// The image side of a vision-language checkpoint (nil: images are refused).
    public let vision: ServingVision?
    /// Where request images may come from.
    public let imagePolicy: ImageSourcePolicy
    /// Largest request body accepted (`--max-request-bytes`); larger ones get 413.
    public let maximumRequestBytes: Int
    /// Requests wait here until the cluster first serves every expert (`/ready`).
    public let readiness: ReadinessGate

    public init(engine: InferenceEngine, scheduler: BatchScheduler, text: ServingText, modelName: String, maximumModelLength: Int,
                vision: ServingVision? = nil, imagePolicy: ImageSourcePolicy = .init(), maximumRequestBytes: Int = 64 << 20,
                readiness: ReadinessGate = .always) {
        self.maximumRequestBytes = maximumRequestBytes
        self.readiness = readiness
        self.engine = engine
        self.scheduler = scheduler
        self.text = text
        self.modelName = modelName
        self.maximumModelLength = maximumModelLength
        self.vision = vision
        self.imagePolicy = imagePolicy
    }
}

/// A request problem, reported as an OpenAI-style error naming the parameter.
struct RequestProblem: Error {
    let status: HTTPResponse.Status
    let message: String
    let param: String?
    let code: String?

    init(_ message: String, param: String? = nil, status: HTTPResponse.Status = .badRequest, code: String? = nil) {
        self.message = message
        self.param = param
        self.status = status
        self.code = code
    }
}

/// Typed access to a JSON request body, with errors naming the field.
struct RequestBody {
    let object: TemplateObject

    init(_ data: ByteBuffer) throws {
        let value: TemplateValue
        do {
            value = try JSONText.parse(Data(buffer: data))
        } catch {
            throw RequestProblem("We could not parse the JSON body of your request: \(error)")
        }
        guard case .object(let o) = value else { throw RequestProblem("The request body must be a JSON object.") }
        object = o
    }

    subscript(key: String) -> TemplateValue? {
        guard let v = object[key] else { return nil }
        if case .none = v { return nil }
        return v
    }

    func string(_ key: String) throws -> String? {
        guard let v = self[key] else { return nil }
        guard case .string(let s) = v else { throw RequestProblem("'\(key)' must be a string.", param: key) }
        return s
    }

    func bool(_ key: String) throws -> Bool? {
        guard let v = self[key] else { return nil }
        guard case .bool(let b) = v else { throw RequestProblem("'\(key)' must be a boolean.", param: key) }
        return b
    }

    func int(_ key: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let v = self[key] else { return nil }
        guard case .int(let i) = v, range.contains(i) else {
            throw RequestProblem("'\(key)' must be an integer in \(range.lowerBound)…\(range.upperBound == Int.max ? "∞" : String(range.upperBound)).", param: key)
        }
        return i
    }

    func number(_ key: String, in range: ClosedRange<Double>) throws -> Double? {
        guard let v = self[key] else { return nil }
        let d: Double
        switch v {
        case .int(let i): d = Double(i)
        case .double(let x): d = x
        default: throw RequestProblem("'\(key)' must be a number.", param: key)
        }
        guard range.contains(d) else { throw RequestProblem("'\(key)' must be in \(range.lowerBound)…\(range.upperBound), got \(d).", param: key) }
        return d
    }
}

/// Sampling and limits shared by completions and chat completions.
struct GenerationParameters {
    var maxTokens: Int?
    var sampling: SamplingParameters
    var stop: [String]
    var expertsPerToken: ExpertsPerToken
    var stream: Bool
    var includeUsage: Bool
    /// vLLM's `ignore_eos` extension: generate max_tokens even past EOS.
    var ignoreEOS: Bool
    /// Jindou's extension: false opts this request out of the server's speculative decoding.
    var speculative: Bool

    init(_ body: RequestBody, router: JindouRouting.Router?) throws {
        if let n = try body.int("n", in: 1...Int.max), n != 1 { throw RequestProblem("Only n=1 is supported.", param: "n") }
        for unsupported in ["logprobs", "top_logprobs", "echo", "best_of", "logit_bias", "suffix"] {
            if let v = body[unsupported], v.truthy { throw RequestProblem("'\(unsupported)' is not supported.", param: unsupported) }
        }
        // Structured outputs are not constrained yet: refuse them rather than return free text.
        if let format = body["response_format"], format.truthy {
            guard case .object(let f) = format, case .string(let type)? = f["type"] else {
                throw RequestProblem("'response_format' must be an object with a 'type'.", param: "response_format")
            }
            if type != "text" {
                throw RequestProblem("'response_format' of type '\(type)' is not supported yet (only 'text'); the output would not be constrained to it.",
                                     param: "response_format")
            }
        }
        for constrained in ["guided_json", "guided_regex", "guided_choice", "guided_grammar", "structured_outputs", "grammar"] {
            if let v = body[constrained], v.truthy {
                throw RequestProblem("'\(constrained)' (constrained decoding) is not supported yet.", param: constrained)
            }
        }
        for penalty in ["presence_penalty", "frequency_penalty"] {
            if let p = try body.number(penalty, in: -2...2), p != 0 { throw RequestProblem("'\(penalty)' is not supported (use 0).", param: penalty) }
        }
        maxTokens = try body.int("max_completion_tokens", in: 0...Int.max) ?? body.int("max_tokens", in: 0...Int.max)
        ignoreEOS = try body.bool("ignore_eos") ?? false
        speculative = try body.bool("speculative") ?? true
        let temperature = try body.number("temperature", in: 0...2) ?? 1
        let topP = try body.number("top_p", in: 0...1) ?? 1
        guard topP > 0 else { throw RequestProblem("'top_p' must be greater than 0.", param: "top_p") }
        let topK = try body.int("top_k", in: -1...Int.max) ?? 0
        let seed = try body.int("seed", in: Int.min...Int.max).map { UInt64(bitPattern: Int64($0)) }
        sampling = SamplingParameters(temperature: Float(temperature), topK: max(0, topK), topP: Float(topP), seed: seed)
        switch body["stop"] {
        case nil: stop = []
        case .string(let s)?: stop = [s]
        case .array(let a)? where a.count <= 4 && a.allSatisfy({ if case .string = $0 { return true } else { return false } }):
            stop = a.map(\.text)
        default: throw RequestProblem("'stop' must be a string or a list of up to 4 strings.", param: "stop")
        }
        switch body["experts_per_token"] {
        case nil: expertsPerToken = .configured
        case .int(let k)?: expertsPerToken = .fixed(k)
        case .string(let s)?:
            guard let parsed = ExpertsPerToken(parsing: s) else {
                throw RequestProblem("'experts_per_token' must be an integer, \"auto\" or \"auto:T\" with 0 < T ≤ 1.", param: "experts_per_token")
            }
            expertsPerToken = parsed
        default: throw RequestProblem("'experts_per_token' must be an integer or \"auto\".", param: "experts_per_token")
        }
        if let router {
            do { try router.validate(expertsPerToken) } catch {
                throw RequestProblem("\(error)", param: "experts_per_token")
            }
        }
        stream = try body.bool("stream") ?? false
        if case .object(let options)? = body["stream_options"] { includeUsage = options["include_usage"]?.truthy ?? false } else { includeUsage = false }
    }
}

enum OpenAIAPI {
    static func register(on router: Hummingbird.Router<APIRequestContext>, serving: ServingContext) {
        router.get("v1/models") { _, _ -> Response in
            let created = Int(Date().timeIntervalSince1970)
            return json(["object": .string("list"), "data": .array([.object(TemplateObject([
                ("id", .string(serving.modelName)), ("object", .string("model")), ("created", .int(created)),
                ("owned_by", .string("jindou")), ("max_model_len", .int(serving.maximumModelLength)),
            ]))])])
        }
        router.post("v1/completions") { request, context -> Response in
            await handle(context) { try await completions(request, serving: serving) }
        }
        router.post("v1/chat/completions") { request, context -> Response in
            await handle(context) { try await chatCompletions(request, serving: serving) }
        }
        router.post("tokenize") { request, context -> Response in
            await handle(context) { try await tokenize(request, serving: serving) }
        }
    }

    // MARK: Endpoints

    static func completions(_ request: Request, serving: ServingContext) async throws -> Response {
        let body = try RequestBody(try await RequestBodyLimit.collect(request, limit: serving.maximumRequestBytes))
        try checkModel(body, serving)
        let parameters = try GenerationParameters(body, router: serving.engine.model.anyRouter)
        let prompt: [Int]
        switch body["prompt"] {
        case .string(let text)?:
            guard let tokenizer = serving.text.tokenizer else {
                throw RequestProblem("This model has no tokenizer.json; send the prompt as token ids.", param: "prompt")
            }
            prompt = tokenizer.encode(text, addSpecialTokens: true)
        case .array(let items)? where items.count == 1:
            if case .string(let text) = items[0], let tokenizer = serving.text.tokenizer {
                prompt = tokenizer.encode(text, addSpecialTokens: true)
            } else if case .array(let ids) = items[0] {
                prompt = try tokenIDs(ids)
            } else {
                throw RequestProblem("'prompt' must be a string, a list of token ids, or a list with one of those.", param: "prompt")
            }
        case .array(let items)? where !items.isEmpty:
            prompt = try tokenIDs(items)
        default:
            throw RequestProblem("'prompt' must be a string or a list of token ids (batches of prompts are not supported).", param: "prompt")
        }
        return try await run(prompt: prompt, parameters: parameters, defaultMaxTokens: 16, chat: false, serving: serving)
    }

    static func chatCompletions(_ request: Request, serving: ServingContext) async throws -> Response {
        let body = try RequestBody(try await RequestBodyLimit.collect(request, limit: serving.maximumRequestBytes))
        try checkModel(body, serving)
        let parameters = try GenerationParameters(body, router: serving.engine.model.anyRouter)
        let prompt = try chatPrompt(body, serving: serving)
        return try await run(prompt: prompt.tokens, multimodal: prompt.multimodal, parameters: parameters, defaultMaxTokens: nil,
                             chat: true, serving: serving)
    }

    /// The prompt of a chat request: `messages` (and `tools`, `chat_template_kwargs`)
    /// rendered by the model's chat template and tokenized.
    static func chatPrompt(_ body: RequestBody, serving: ServingContext) throws -> ChatPrompt {
        guard serving.text.chatTemplate != nil, serving.text.tokenizer != nil else {
            throw RequestProblem("This model has no chat template or tokenizer; use /v1/completions.", param: "messages")
        }
        guard case .array(let messages)? = body["messages"], !messages.isEmpty else {
            throw RequestProblem("'messages' must be a non-empty list.", param: "messages")
        }
        for (i, message) in messages.enumerated() {
            guard case .object(let m) = message, case .string? = m["role"] else {
                throw RequestProblem("messages[\(i)] must be an object with a 'role'.", param: "messages")
            }
        }
        var tools: [TemplateValue]?
        if case .array(let t)? = body["tools"] { tools = t }
        var extra: [String: TemplateValue] = [:]
        if case .object(let kwargs)? = body["chat_template_kwargs"] { for (k, v) in kwargs.pairs { extra[k] = v } }
        do {
            return try ChatPrompt.build(messages: messages, tools: tools, extra: extra, text: serving.text, vision: serving.vision,
                                        engine: serving.engine, policy: serving.imagePolicy)
        } catch let error as TemplateError {
            throw RequestProblem("The chat template could not render these messages: \(error.message)", param: "messages")
        } catch let error as ImageInputError {
            throw RequestProblem(error.message, param: "messages")
        } catch let error as VisionError {
            throw RequestProblem(error.description, param: "messages")
        }
    }

    /// `POST /tokenize` (vLLM's extension): the token ids of `prompt`, or of `messages`
    /// rendered by the chat template, with the model's context length — so a client can
    /// fit its history to the context before it asks for a completion.
    static func tokenize(_ request: Request, serving: ServingContext) async throws -> Response {
        let body = try RequestBody(try await RequestBodyLimit.collect(request, limit: serving.maximumRequestBytes))
        if body["model"] != nil { try checkModel(body, serving) }
        let tokens: [Int]
        if body["messages"] != nil {
            tokens = try chatPrompt(body, serving: serving).tokens
        } else if let text = try body.string("prompt") {
            guard let tokenizer = serving.text.tokenizer else { throw RequestProblem("This model has no tokenizer.", param: "prompt") }
            tokens = tokenizer.encode(text, addSpecialTokens: try body.bool("add_special_tokens") ?? true)
        } else {
            throw RequestProblem("Send 'prompt' (a string) or 'messages' (a chat).", param: "prompt")
        }
        return json(["count": .int(tokens.count), "max_model_len": .int(serving.maximumModelLength),
                     "tokens": .array(tokens.map { .int($0) })])
    }

    static func tokenIDs(_ items: [TemplateValue]) throws -> [Int] {
        try items.map { item in
            guard case .int(let id) = item else { throw RequestProblem("token ids must be integers.", param: "prompt") }
            return id
        }
    }

    static func checkModel(_ body: RequestBody, _ serving: ServingContext) throws {
        guard let model = try body.string("model") else { throw RequestProblem("'model' is required.", param: "model") }
        guard model == serving.modelName else {
            throw RequestProblem("The model `\(model)` does not exist (this server serves `\(serving.modelName)`).",
                                 param: "model", status: .notFound, code: "model_not_found")
        }
    }

    // MARK: Generation

    static func run(prompt: [Int], multimodal: MultimodalPrompt? = nil, parameters: GenerationParameters, defaultMaxTokens: Int?,
                    chat: Bool, serving: ServingContext) async throws -> Response {
        let limit = serving.maximumModelLength
        let available = limit - prompt.count
        guard available > 0 else {
            throw RequestProblem("This model's maximum context length is \(limit) tokens. However, your prompt has \(prompt.count) tokens.",
                                 param: chat ? "messages" : "prompt", code: "context_length_exceeded")
        }
        let maxTokens = parameters.maxTokens ?? defaultMaxTokens ?? available
        guard prompt.count + maxTokens <= limit else {
            throw RequestProblem("This model's maximum context length is \(limit) tokens. However, you requested \(prompt.count + maxTokens) tokens (\(prompt.count) in the prompt, \(maxTokens) in the completion).",
                                 param: "max_tokens", code: "context_length_exceeded")
        }
        var request = GenerationRequest(
            promptTokenIDs: prompt, maxNewTokens: maxTokens, sampling: parameters.sampling,
            expertsPerToken: parameters.expertsPerToken, stopTokenIDs: parameters.ignoreEOS ? [] : serving.text.stopTokenIDs)
        request.multimodal = multimodal
        request.speculative = parameters.speculative
        try await serving.readiness.admit()
        let events = try await serving.scheduler.submit(request)
        let id = (chat ? "chatcmpl-" : "cmpl-") + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(24)
        let created = Int(Date().timeIntervalSince1970)
        let header: [(String, TemplateValue)] = [("id", .string(id)), ("object", .string(chat ? "chat.completion" : "text_completion")),
                                                 ("created", .int(created)), ("model", .string(serving.modelName))]
        if parameters.stream {
            return streamingResponse(events: events, header: header, chat: chat, parameters: parameters, serving: serving)
        }
        var stream = serving.text.tokenizer.map { StreamingDetokenizer(tokenizer: $0) }
        var matcher = StopStringMatcher(parameters.stop)
        var text = ""
        var finish = "length"
        var completionTokens = 0
        loop: for try await event in events {
            switch event {
            case .token(let token):
                completionTokens += 1
                text += matcher.feed(stream?.append(token) ?? "")
                if matcher.stopped {
                    finish = "stop"
                    break loop  // ending the iteration cancels the sequence
                }
            case .finished(let reason, _, let count):
                completionTokens = count
                finish = reason == .stop ? "stop" : "length"
            case .promptLogits, .speculation:
                break
            }
        }
        if !matcher.stopped { text += matcher.feed(stream?.finish() ?? "") + matcher.flush() }
        let choice: TemplateObject = chat
            ? TemplateObject([("index", .int(0)), ("message", .object(TemplateObject([("role", .string("assistant")), ("content", .string(text))]))),
                              ("logprobs", .none), ("finish_reason", .string(finish))])
            : TemplateObject([("index", .int(0)), ("text", .string(text)), ("logprobs", .none), ("finish_reason", .string(finish))])
        return json(TemplateObject(header + [("choices", .array([.object(choice)])), ("usage", usage(prompt.count, completionTokens))]))
    }

    static func usage(_ prompt: Int, _ completion: Int) -> TemplateValue {
        .object(TemplateObject([("prompt_tokens", .int(prompt)), ("completion_tokens", .int(completion)),
                                ("total_tokens", .int(prompt + completion))]))
    }

    /// Server-sent events: one chunk per piece of text, then the finish reason, optional
    /// usage, and `data: [DONE]`. A client that disconnects ends the generation.
    static func streamingResponse(events: AsyncThrowingStream<GenerationEvent, Error>, header: [(String, TemplateValue)], chat: Bool,
                                  parameters: GenerationParameters, serving: ServingContext) -> Response {
        let tokenizer = serving.text.tokenizer
        let chunkHeader = header.map { $0.0 == "object" ? ("object", TemplateValue.string(chat ? "chat.completion.chunk" : "text_completion")) : $0 }
        let stops = parameters.stop
        let includeUsage = parameters.includeUsage
        let body = ResponseBody { writer in
            func send(_ object: TemplateObject) async throws {
                try await writer.write(ByteBuffer(string: "data: " + (try JSONText.encode(.object(object))) + "\n\n"))
            }
            func chunk(text: String?, finish: String?, role: Bool = false) -> TemplateObject {
                let choice: TemplateObject
                if chat {
                    var delta = TemplateObject()
                    if role { delta["role"] = .string("assistant") }
                    if let text { delta["content"] = .string(text) }
                    choice = TemplateObject([("index", .int(0)), ("delta", .object(delta)), ("logprobs", .none),
                                             ("finish_reason", finish.map { .string($0) } ?? .none)])
                } else {
                    choice = TemplateObject([("index", .int(0)), ("text", .string(text ?? "")), ("logprobs", .none),
                                             ("finish_reason", finish.map { .string($0) } ?? .none)])
                }
                return TemplateObject(chunkHeader + [("choices", .array([.object(choice)]))])
            }
            var detokenizer = tokenizer.map { StreamingDetokenizer(tokenizer: $0) }
            var matcher = StopStringMatcher(stops)
            var promptTokens = 0, completionTokens = 0
            var finish = "length"
            if chat { try await send(chunk(text: "", finish: nil, role: true)) }
            do {
                loop: for try await event in events {
                    switch event {
                    case .token(let token):
                        completionTokens += 1
                        let piece = matcher.feed(detokenizer?.append(token) ?? "")
                        if !piece.isEmpty { try await send(chunk(text: piece, finish: nil)) }
                        if matcher.stopped {
                            finish = "stop"
                            break loop
                        }
                    case .finished(let reason, let prompt, let count):
                        promptTokens = prompt
                        completionTokens = count
                        finish = reason == .stop ? "stop" : "length"
                    case .promptLogits, .speculation:
                        break
                    }
                }
                if !matcher.stopped {
                    let tail = matcher.feed(detokenizer?.finish() ?? "") + matcher.flush()
                    if !tail.isEmpty { try await send(chunk(text: tail, finish: nil)) }
                }
                try await send(chunk(text: nil, finish: finish))
                if includeUsage {
                    try await send(TemplateObject(chunkHeader + [("choices", .array([])), ("usage", usage(promptTokens, completionTokens))]))
                }
            } catch let error as RequestProblem {
                try await send(TemplateObject([("error", errorObject(error))]))
            } catch {
                if error is CancellationError { throw error }
                try await send(TemplateObject([("error", .object(TemplateObject([("message", .string("\(error)")), ("type", .string("server_error"))])))]))
            }
            try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: body)
    }

    // MARK: Responses

    static func json(_ object: TemplateObject, status: HTTPResponse.Status = .ok) -> Response {
        let text = (try? JSONText.encode(.object(object))) ?? "{}"
        return Response(status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }

    static func json(_ pairs: KeyValuePairs<String, TemplateValue>) -> Response {
        json(TemplateObject(pairs.map { ($0.key, $0.value) }))
    }

    static func errorObject(_ problem: RequestProblem) -> TemplateValue {
        .object(TemplateObject([
            ("message", .string(problem.message)),
            ("type", .string(problem.status == .notFound ? "not_found_error" : problem.status == .tooManyRequests ? "rate_limit_error" : "invalid_request_error")),
            ("param", problem.param.map { .string($0) } ?? .none), ("code", problem.code.map { .string($0) } ?? .none),
        ]))
    }

    /// Maps every error to an OpenAI-style response; the server stays up.
    static func handle(_ context: APIRequestContext, _ body: () async throws -> Response) async -> Response {
        do {
            return try await body()
        } catch let problem as RequestProblem {
            return json(TemplateObject([("error", errorObject(problem))]), status: problem.status)
        } catch let error as RequestBodyLimit.TooLarge {
            return json(TemplateObject([("error", errorObject(RequestProblem(error.description, status: .contentTooLarge,
                                                                              code: "request_too_large")))]),
                        status: .contentTooLarge)
        } catch let error as ReadinessGate.NotReady {
            return json(TemplateObject([("error", .object(TemplateObject([("message", .string(error.description)), ("type", .string("server_error")),
                                                                          ("param", .none), ("code", .string("not_ready"))])))]),
                        status: .serviceUnavailable)
        } catch let error as SchedulerError {
            switch error {
            case .busy: return json(TemplateObject([("error", errorObject(RequestProblem(error.description, status: .tooManyRequests)))]), status: .tooManyRequests)
            case .tooLarge: return json(TemplateObject([("error", errorObject(RequestProblem(error.description, param: "max_tokens")))]), status: .badRequest)
            case .shuttingDown: return json(TemplateObject([("error", errorObject(RequestProblem(error.description, status: .serviceUnavailable)))]), status: .serviceUnavailable)
            }
        } catch let error as EngineError {
            return json(TemplateObject([("error", errorObject(RequestProblem(error.description)))]), status: .badRequest)
        } catch {
            context.logger.error("request failed", metadata: ["error": "\(error)"])
            let problem = RequestProblem("\(error)", status: .serviceUnavailable)
            return json(TemplateObject([("error", .object(TemplateObject([("message", .string(problem.message)), ("type", .string("server_error"))])))]),
                        status: .serviceUnavailable)
        }
    }
}
