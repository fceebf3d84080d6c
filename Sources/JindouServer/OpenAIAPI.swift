import Foundation
import Hummingbird
import JindouGrammar
import JindouModel
import JindouOutputParsing
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
    /// How chat answers are split into reasoning, content and tool calls
    /// (`--reasoning-parser`, `--tool-call-parser`).
    public let outputFormat: OutputFormat
    /// The tokenizer's vocabulary as a byte trie for constrained decoding, built on first use.
    let vocabulary: LazyVocabulary

    public init(engine: InferenceEngine, scheduler: BatchScheduler, text: ServingText, modelName: String, maximumModelLength: Int,
                vision: ServingVision? = nil, imagePolicy: ImageSourcePolicy = .init(), maximumRequestBytes: Int = 64 << 20,
                readiness: ReadinessGate = .always, outputFormat: OutputFormat? = nil) {
        self.outputFormat = outputFormat ?? (try? OutputFormat.automatic(chatTemplate: text.chatTemplate?.source))
            ?? OutputFormat(reasoningParser: nil, reasoning: nil, toolCallParser: nil, toolCalls: nil)
        vocabulary = LazyVocabulary(tokenizer: text.tokenizer, size: engine.description.vocabularySize)
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

    init(object: TemplateObject) { self.object = object }

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
    /// Choices to generate (`n`), each its own sequence (with `seed`, choice i draws from seed + i).
    var choices: Int
    /// Log-probabilities: nil none; else the alternatives per token (chat `top_logprobs`,
    /// completions `logprobs: N`).
    var logprobs: Int?
    /// vLLM's `stop_token_ids`: tokens that end the choice besides the model's EOS ids
    /// (even with `ignore_eos`); as in vLLM, the text keeps a stop token that is not special.
    var stopTokenIDs: Set<Int> = []
    /// vLLM's `skip_special_tokens` (default true): false keeps special tokens' text (not the stop tokens').
    var skipSpecialTokens = true
    /// The JSON schema the output must follow (`response_format`, `guided_json`).
    var responseGrammar: JSONSchemaGrammar?

    static func grammar(_ schema: TemplateValue, param: String) throws -> JSONSchemaGrammar {
        do { return try JSONSchemaGrammar(schema: schema) } catch let error as JSONSchemaError {
            throw RequestProblem("\(param): \(error.message).", param: param)
        }
    }

    init(_ body: RequestBody, router: JindouRouting.Router?, chat: Bool, vocabularySize: Int) throws {
        choices = try body.int("n", in: 1...16) ?? 1
        if chat {
            let wanted = try body.bool("logprobs") ?? false
            let top = try body.int("top_logprobs", in: 0...20)
            if top != nil && !wanted { throw RequestProblem("'top_logprobs' needs 'logprobs': true.", param: "top_logprobs") }
            logprobs = wanted ? top ?? 0 : nil
        } else {
            logprobs = try body.int("logprobs", in: 0...20)
        }
        if let ids = body["stop_token_ids"] {
            guard case .array(let items) = ids, items.count <= 64 else {
                throw RequestProblem("'stop_token_ids' must be a list of up to 64 token ids.", param: "stop_token_ids")
            }
            for item in items {
                guard case .int(let id) = item, (0..<vocabularySize).contains(id) else {
                    throw RequestProblem("'stop_token_ids' entries must be token ids of this model (0…\(vocabularySize - 1)).",
                                         param: "stop_token_ids")
                }
                stopTokenIDs.insert(id)
            }
        }
        for unsupported in ["echo", "best_of", "suffix"] {
            if let v = body[unsupported], v.truthy { throw RequestProblem("'\(unsupported)' is not supported.", param: unsupported) }
        }
        // Structured outputs: response_format (OpenAI) or guided_json (vLLM), enforced by a token mask.
        if let format = body["response_format"], format.truthy {
            guard case .object(let f) = format, case .string(let type)? = f["type"] else {
                throw RequestProblem("'response_format' must be an object with a 'type'.", param: "response_format")
            }
            switch type {
            case "text": break
            case "json_object": responseGrammar = JSONSchemaGrammar.anyObject()
            case "json_schema":
                guard case .object(let spec)? = f["json_schema"], let schema = spec["schema"] else {
                    throw RequestProblem("'response_format.json_schema.schema' is required for type json_schema.", param: "response_format")
                }
                responseGrammar = try Self.grammar(schema, param: "response_format")
            default:
                throw RequestProblem("'response_format' type must be text, json_object or json_schema, got '\(type)'.", param: "response_format")
            }
        }
        if let schema = body["guided_json"] {
            var value = schema
            if case .string(let text) = schema {
                guard let parsed = try? JSONText.parse(Data(text.utf8)) else {
                    throw RequestProblem("'guided_json' must be a JSON schema (an object or its JSON text).", param: "guided_json")
                }
                value = parsed
            }
            responseGrammar = try Self.grammar(value, param: "guided_json")
        }
        for constrained in ["guided_regex", "guided_choice", "guided_grammar", "structured_outputs", "grammar"] {
            if let v = body[constrained], v.truthy {
                throw RequestProblem("'\(constrained)' is not supported (JSON schemas are: response_format, guided_json).", param: constrained)
            }
        }
        maxTokens = try body.int("max_completion_tokens", in: 0...Int.max) ?? body.int("max_tokens", in: 0...Int.max)
        ignoreEOS = try body.bool("ignore_eos") ?? false
        skipSpecialTokens = try body.bool("skip_special_tokens") ?? true
        speculative = try body.bool("speculative") ?? true
        let temperature = try body.number("temperature", in: 0...2) ?? 1
        let topP = try body.number("top_p", in: 0...1) ?? 1
        guard topP > 0 else { throw RequestProblem("'top_p' must be greater than 0.", param: "top_p") }
        let topK = try body.int("top_k", in: -1...Int.max) ?? 0
        let seed = try body.int("seed", in: Int.min...Int.max).map { UInt64(bitPattern: Int64($0)) }
        sampling = SamplingParameters(temperature: Float(temperature), topK: max(0, topK), topP: Float(topP), seed: seed)
        sampling.minP = Float(try body.number("min_p", in: 0...1) ?? 0)
        sampling.presencePenalty = Float(try body.number("presence_penalty", in: -2...2) ?? 0)
        sampling.frequencyPenalty = Float(try body.number("frequency_penalty", in: -2...2) ?? 0)
        let repetition = try body.number("repetition_penalty", in: 0...2) ?? 1
        guard repetition > 0 else { throw RequestProblem("'repetition_penalty' must be greater than 0.", param: "repetition_penalty") }
        sampling.repetitionPenalty = Float(repetition)
        if let bias = body["logit_bias"] {
            guard case .object(let entries) = bias else {
                throw RequestProblem("'logit_bias' must be an object of token ids to biases.", param: "logit_bias")
            }
            for (key, value) in entries.pairs {
                guard let id = Int(key), (0..<vocabularySize).contains(id) else {
                    throw RequestProblem("'logit_bias' key '\(key)' is not a token id of this model (0…\(vocabularySize - 1)).", param: "logit_bias")
                }
                let amount: Double
                switch value {
                case .int(let i): amount = Double(i)
                case .double(let d): amount = d
                default: throw RequestProblem("'logit_bias' values must be numbers in -100…100.", param: "logit_bias")
                }
                guard (-100...100).contains(amount) else {
                    throw RequestProblem("'logit_bias' values must be in -100…100, got \(amount).", param: "logit_bias")
                }
                sampling.logitBias[id] = Float(amount)
            }
        }
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
        AnthropicAPI.register(on: router, serving: serving)
    }

    // MARK: Endpoints

    static func completions(_ request: Request, serving: ServingContext) async throws -> Response {
        let body = try RequestBody(try await RequestBodyLimit.collect(request, limit: serving.maximumRequestBytes))
        try checkModel(body, serving)
        let parameters = try GenerationParameters(body, router: serving.engine.model.anyRouter, chat: false,
                                                  vocabularySize: serving.engine.description.vocabularySize)
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
        let parameters = try GenerationParameters(body, router: serving.engine.model.anyRouter, chat: true,
                                                  vocabularySize: serving.engine.description.vocabularySize)
        let output = try ChatOutputOptions(body, format: serving.outputFormat, constrainedContent: parameters.responseGrammar != nil)
        let prompt = try chatPrompt(body, serving: serving)
        return try await run(prompt: prompt.tokens + preamble(output, serving), multimodal: prompt.multimodal, parameters: parameters,
                             defaultMaxTokens: nil, chat: true, output: output, serving: serving)
    }

    /// The tokens of `output.constrainedPreamble` (special tokens as such), or none.
    static func preamble(_ output: ChatOutputOptions, _ serving: ServingContext) -> [Int] {
        guard let text = output.constrainedPreamble, let tokenizer = serving.text.tokenizer else { return [] }
        return tokenizer.encode(text, addSpecialTokens: false)
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

    /// Checks the request fits the context, waits for readiness and submits one sequence per
    /// choice (with a seed, choice i draws from seed + i), constrained when the request says so.
    static func submit(prompt: [Int], multimodal: MultimodalPrompt? = nil, parameters: GenerationParameters, defaultMaxTokens: Int?,
                       chat: Bool, output: ChatOutputOptions?, serving: ServingContext) async throws -> [AsyncThrowingStream<GenerationEvent, Error>] {
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
        try await serving.readiness.admit()
        var streams: [AsyncThrowingStream<GenerationEvent, Error>] = []
        for index in 0..<parameters.choices {
            var sampling = parameters.sampling
            sampling.seed = sampling.seed.map { $0 &+ UInt64(index) }
            var request = GenerationRequest(
                promptTokenIDs: prompt, maxNewTokens: maxTokens, sampling: sampling,
                expertsPerToken: parameters.expertsPerToken,
                stopTokenIDs: (parameters.ignoreEOS ? [] : serving.text.stopTokenIDs).union(parameters.stopTokenIDs))
            request.multimodal = multimodal
            request.clientKey = RequestClient.key
            request.speculative = parameters.speculative
            request.logprobs = parameters.logprobs
            if let grammar = output?.structured.grammar ?? parameters.responseGrammar {
                guard let vocabulary = serving.vocabulary.value else {
                    throw RequestProblem("This model has no tokenizer, so its output cannot be constrained.", param: "response_format")
                }
                request.constraint = JSONConstraint(grammar: grammar, vocabulary: vocabulary,
                                                    endTokens: serving.text.stopTokenIDs)
            }
            streams.append(try await serving.scheduler.submit(request))
        }
        return streams
    }

    static func run(prompt: [Int], multimodal: MultimodalPrompt? = nil, parameters: GenerationParameters, defaultMaxTokens: Int?,
                    chat: Bool, output: ChatOutputOptions? = nil, serving: ServingContext) async throws -> Response {
        let streams = try await submit(prompt: prompt, multimodal: multimodal, parameters: parameters, defaultMaxTokens: defaultMaxTokens,
                                       chat: chat, output: output, serving: serving)
        let id = (chat ? "chatcmpl-" : "cmpl-") + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(24)
        let created = Int(Date().timeIntervalSince1970)
        let header: [(String, TemplateValue)] = [("id", .string(id)), ("object", .string(chat ? "chat.completion" : "text_completion")),
                                                 ("created", .int(created)), ("model", .string(serving.modelName))]
        if parameters.stream {
            return streamingResponse(streams: streams, header: header, chat: chat, parameters: parameters, output: output, serving: serving)
        }
        let results = try await withThrowingTaskGroup(of: (Int, ChoiceText).self) { group in
            for (index, events) in streams.enumerated() {
                group.addTask {
                    var choice = ChoiceText(stops: parameters.stop, tokenizer: serving.text.tokenizer, output: output,
                                           skipSpecialTokens: parameters.skipSpecialTokens, serving: serving)
                    loop: for try await event in events {
                        if choice.consume(event).stopped { break loop }  // ending the iteration cancels the sequence
                    }
                    choice.finishText()
                    return (index, choice)
                }
            }
            var all: [(Int, ChoiceText)] = []
            for try await result in group { all.append(result) }
            return all.sorted { $0.0 < $1.0 }.map(\.1)
        }
        let choices: [TemplateValue] = results.enumerated().map { index, r in
            let logprobs = parameters.logprobs == nil ? TemplateValue.none
                : chat ? chatLogprobs(r.logprobs, serving: serving) : completionLogprobs(r.logprobs, offset: 0, serving: serving)
            if chat, let output {
                let message = output.parse(r.text, choice: index)
                return .object(TemplateObject([("index", .int(index)), ("message", .object(output.messageObject(message))),
                                               ("logprobs", logprobs),
                                               ("finish_reason", .string(output.finishReason(r.finish, calledTools: !message.toolCalls.isEmpty)))]))
            }
            return .object(chat
                ? TemplateObject([("index", .int(index)),
                                  ("message", .object(TemplateObject([("role", .string("assistant")), ("content", .string(r.text))]))),
                                  ("logprobs", logprobs), ("finish_reason", .string(r.finish))])
                : TemplateObject([("index", .int(index)), ("text", .string(r.text)), ("logprobs", logprobs),
                                  ("finish_reason", .string(r.finish))]))
        }
        let completionTokens = results.reduce(0) { $0 + $1.completionTokens }
        let cached = results.map(\.cachedTokens).max() ?? 0
        return json(TemplateObject(header + [("choices", .array(choices)), ("usage", usage(prompt.count, completionTokens, cached: cached))]))
    }

    /// One choice's text as its events arrive: detokenized, cut at a stop string, with the
    /// log-probabilities of its tokens.
    struct ChoiceText {
        var text = ""
        var finish = "length"
        var completionTokens = 0
        var promptTokens = 0
        /// Prompt tokens the prefix cache supplied.
        var cachedTokens = 0
        var logprobs: [TokenLogprobs] = []
        var matcher: StopStringMatcher
        var detokenizer: StreamingDetokenizer?
        /// Tokens whose text stays out (the stop tokens, when special tokens are kept).
        var hiddenTokens: Set<Int> = []

        init(stops: [String], tokenizer: Tokenizer?, output: ChatOutputOptions? = nil, skipSpecialTokens: Bool = true,
             serving: ServingContext? = nil) {
            matcher = StopStringMatcher(stops)
            // The parsers read the markers, which are often special tokens (as vLLM sets
            // skip_special_tokens=False for them); the stop tokens themselves stay out.
            let keepSpecial = (output?.parsesAnything ?? false) || !skipSpecialTokens
            detokenizer = tokenizer.map { StreamingDetokenizer(tokenizer: $0, skipSpecialTokens: !keepSpecial) }
            if keepSpecial, let serving { hiddenTokens = serving.text.stopTokenIDs }
        }

        /// Takes one event; returns the text it adds and whether a stop string ended the choice.
        mutating func consume(_ event: GenerationEvent) -> (piece: String, stopped: Bool) {
            switch event {
            case .token(let token):
                completionTokens += 1
                let piece = hiddenTokens.contains(token) ? "" : matcher.feed(detokenizer?.append(token) ?? "")
                text += piece
                if matcher.stopped { finish = "stop" }
                return (piece, matcher.stopped)
            case .logprobs(let entry):
                logprobs.append(entry)
            case .finished(let reason, let prompt, let count):
                promptTokens = prompt
                completionTokens = count
                finish = reason == .stop ? "stop" : "length"
            case .cachedPrompt(let count):
                cachedTokens = count
            case .promptLogits, .speculation:
                break
            }
            return ("", false)
        }

        /// The held-back tail once the sequence has ended without a stop string.
        @discardableResult
        mutating func finishText() -> String {
            guard !matcher.stopped else { return "" }
            let tail = matcher.feed(detokenizer?.finish() ?? "") + matcher.flush()
            text += tail
            return tail
        }
    }

    /// A token's text and bytes for logprobs (`token_id:N` without a tokenizer, as vLLM's
    /// `return_tokens_as_token_ids`); a byte-level token that is part of a character decodes
    /// with replacement characters, its `bytes` exact.
    static func tokenText(_ id: Int, serving: ServingContext) -> (text: String, bytes: [UInt8]) {
        guard let tokenizer = serving.text.tokenizer else { return ("token_id:\(id)", Array("token_id:\(id)".utf8)) }
        let bytes = tokenizer.bytes([id])
        return (String(decoding: bytes, as: UTF8.self), bytes)
    }

    /// Chat's `logprobs`: `{"content": [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]}`.
    static func chatLogprobs(_ entries: [TokenLogprobs], serving: ServingContext) -> TemplateValue {
        func item(_ id: Int, _ logprob: Float) -> TemplateObject {
            let (text, bytes) = tokenText(id, serving: serving)
            return TemplateObject([("token", .string(text)), ("logprob", .double(Double(logprob))),
                                   ("bytes", .array(bytes.map { .int(Int($0)) }))])
        }
        return .object(TemplateObject([("content", .array(entries.map { entry in
            var o = item(entry.token, entry.logprob)
            o["top_logprobs"] = .array(entry.top.map { .object(item($0.token, $0.logprob)) })
            return .object(o)
        }))]))
    }

    /// Completions' `logprobs`: `{tokens, token_logprobs, top_logprobs: [{token: logprob}], text_offset}`,
    /// offsets counted in characters from `offset`.
    static func completionLogprobs(_ entries: [TokenLogprobs], offset: Int, serving: ServingContext) -> TemplateValue {
        var offsets: [TemplateValue] = [], position = offset
        for entry in entries {
            offsets.append(.int(position))
            position += tokenText(entry.token, serving: serving).text.count
        }
        return .object(TemplateObject([
            ("tokens", .array(entries.map { .string(tokenText($0.token, serving: serving).text) })),
            ("token_logprobs", .array(entries.map { .double(Double($0.logprob)) })),
            ("top_logprobs", .array(entries.map { entry in
                .object(TemplateObject(entry.top.map { (tokenText($0.token, serving: serving).text, .double(Double($0.logprob))) }))
            })),
            ("text_offset", .array(offsets)),
        ]))
    }

    /// `usage`, with `prompt_tokens_details.cached_tokens` (the prefix cache's share of the prompt).
    static func usage(_ prompt: Int, _ completion: Int, cached: Int = 0) -> TemplateValue {
        .object(TemplateObject([("prompt_tokens", .int(prompt)), ("completion_tokens", .int(completion)),
                                ("total_tokens", .int(prompt + completion)),
                                ("prompt_tokens_details", .object(TemplateObject([("cached_tokens", .int(cached))])))]))
    }

    /// Server-sent events: one chunk per piece of text of a choice (`index`), then each
    /// choice's finish reason, optional usage, and `data: [DONE]`. A client that disconnects
    /// ends the generations.
    static func streamingResponse(streams: [AsyncThrowingStream<GenerationEvent, Error>], header: [(String, TemplateValue)], chat: Bool,
                                  parameters: GenerationParameters, output: ChatOutputOptions?, serving: ServingContext) -> Response {
        let chunkHeader = header.map { $0.0 == "object" ? ("object", TemplateValue.string(chat ? "chat.completion.chunk" : "text_completion")) : $0 }
        let includeUsage = parameters.includeUsage, wantsLogprobs = parameters.logprobs != nil
        let body = ResponseBody { writer in
            func send(_ object: TemplateObject) async throws {
                try await writer.write(ByteBuffer(string: "data: " + (try JSONText.encode(.object(object))) + "\n\n"))
            }
            func chunk(_ index: Int, text: String?, finish: String?, role: Bool = false, logprobs: [TokenLogprobs] = [],
                       offset: Int = 0, parsed: AssistantDelta? = nil) -> TemplateObject {
                let lp: TemplateValue = !wantsLogprobs || logprobs.isEmpty ? .none
                    : chat ? chatLogprobs(logprobs, serving: serving) : completionLogprobs(logprobs, offset: offset, serving: serving)
                let choice: TemplateObject
                if chat {
                    var delta = TemplateObject()
                    if role { delta["role"] = .string("assistant") }
                    if let parsed, let output {
                        for (k, v) in output.deltaObject(parsed).pairs { delta[k] = v }
                    } else if let text { delta["content"] = .string(text) }
                    choice = TemplateObject([("index", .int(index)), ("delta", .object(delta)), ("logprobs", lp),
                                             ("finish_reason", finish.map { .string($0) } ?? .none)])
                } else {
                    choice = TemplateObject([("index", .int(index)), ("text", .string(text ?? "")), ("logprobs", lp),
                                             ("finish_reason", finish.map { .string($0) } ?? .none)])
                }
                return TemplateObject(chunkHeader + [("choices", .array([.object(choice)]))])
            }
            // Every choice's events, merged in arrival order; a choice that meets a stop string is cancelled alone.
            let (merged, sink) = AsyncThrowingStream<(Int, GenerationEvent), Error>.makeStream()
            let producers = streams.enumerated().map { index, events in
                Task {
                    do {
                        for try await event in events { sink.yield((index, event)) }
                        sink.yield((index, .finished(.length, promptTokens: -1, completionTokens: -1)))  // end marker
                    } catch {
                        sink.finish(throwing: error)
                    }
                }
            }
            var choices = streams.map { _ in ChoiceText(stops: parameters.stop, tokenizer: serving.text.tokenizer, output: output,
                                           skipSpecialTokens: parameters.skipSpecialTokens, serving: serving) }
            var parsers = streams.indices.map { output?.streamingParser(choice: $0) }
            var calledTools = streams.map { _ in false }
            var pendingLogprobs = streams.map { _ in [TokenLogprobs]() }
            var offsets = streams.map { _ in 0 }
            var open = Set(streams.indices)
            func flush(_ index: Int, _ piece: String, last: Bool = false) async throws {
                var parsed: AssistantDelta?
                if parsers[index] != nil {
                    var delta = last ? parsers[index]!.finish(after: piece, output!)
                        : piece.isEmpty ? AssistantDelta() : parsers[index]!.feed(piece)
                    delta = output!.filter(delta)
                    if !delta.toolCalls.isEmpty { calledTools[index] = true }
                    parsed = delta
                    guard !delta.isEmpty || (wantsLogprobs && !pendingLogprobs[index].isEmpty) else { return }
                } else {
                    guard !piece.isEmpty || (wantsLogprobs && !pendingLogprobs[index].isEmpty) else { return }
                }
                try await send(chunk(index, text: piece, finish: nil, logprobs: pendingLogprobs[index], offset: offsets[index], parsed: parsed))
                offsets[index] += piece.count
                pendingLogprobs[index] = []
            }
            func close(_ index: Int) async throws {
                guard open.remove(index) != nil else { return }
                try await flush(index, choices[index].finishText(), last: true)
                let finish = output?.finishReason(choices[index].finish, calledTools: calledTools[index]) ?? choices[index].finish
                try await send(chunk(index, text: nil, finish: finish))
                if open.isEmpty { sink.finish() }
            }
            do {
                if chat { for index in streams.indices { try await send(chunk(index, text: "", finish: nil, role: true)) } }
                for try await (index, event) in merged where open.contains(index) {
                    if case .finished(_, let prompt, _) = event, prompt < 0 {
                        try await close(index)
                        continue
                    }
                    if case .logprobs(let entry) = event { pendingLogprobs[index].append(entry) }
                    let (piece, stopped) = choices[index].consume(event)
                    if case .token = event { try await flush(index, piece) }
                    if stopped {
                        producers[index].cancel()
                        try await close(index)
                    }
                }
                if includeUsage {
                    let prompt = choices.map(\.promptTokens).max() ?? 0, completion = choices.reduce(0) { $0 + $1.completionTokens }
                    let cached = choices.map(\.cachedTokens).max() ?? 0
                    try await send(TemplateObject(chunkHeader + [("choices", .array([])), ("usage", usage(prompt, completion, cached: cached))]))
                }
            } catch let error as RequestProblem {
                try await send(TemplateObject([("error", errorObject(error))]))
            } catch {
                for producer in producers { producer.cancel() }
                if error is CancellationError { throw error }
                try await send(TemplateObject([("error", .object(TemplateObject([("message", .string("\(error)")), ("type", .string("server_error"))])))]))
            }
            for producer in producers { producer.cancel() }
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
            case .busy, .clientBusy: return json(TemplateObject([("error", errorObject(RequestProblem(error.description, status: .tooManyRequests)))]), status: .tooManyRequests)
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
