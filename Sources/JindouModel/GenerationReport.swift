import JindouRouting

/// The JSON a generation returns, from `jindouctl generate --json` (in-process) and from
/// the coordinator's `POST /v1/jindou/generate` alike (shared/DESIGN.md command contract).
public struct GenerationReport: Codable, Sendable, Equatable {
    /// The new tokens.
    public var tokenIDs: [Int]
    /// The K used (the model's when the request did not choose), or auto.
    public var expertsPerToken: ExpertsPerToken
    public var finishReason: FinishReason
    public var promptTokens: Int
    public var prefillSeconds: Double
    public var decodeSeconds: Double
    /// Float32 logits of the last prompt position (full vocabulary), when asked for.
    public var lastLogits: [Float]?
    /// What speculative decoding did (drafted and accepted tokens, decode steps), when it ran.
    public var speculation: SpeculationStatistics?

    enum CodingKeys: String, CodingKey {
        case tokenIDs = "token_ids"
        case expertsPerToken = "experts_per_token"
        case finishReason = "finish_reason"
        case promptTokens = "prompt_tokens"
        case prefillSeconds = "prefill_seconds"
        case decodeSeconds = "decode_seconds"
        case lastLogits = "last_logits"
        case speculation
    }

    public init(_ result: GenerationResult, requested: ExpertsPerToken, description: ModelDescription) {
        tokenIDs = result.tokenIDs
        expertsPerToken = requested == .configured ? .fixed(description.router.expertsPerToken) : requested
        finishReason = result.finishReason
        promptTokens = result.promptTokenCount
        prefillSeconds = result.prefillSeconds
        decodeSeconds = result.decodeSeconds
        lastLogits = result.lastPromptLogits
        speculation = result.speculation
    }

    public var decodeTokensPerSecond: Double {
        tokenIDs.count > 1 && decodeSeconds > 0 ? Double(tokenIDs.count - 1) / decodeSeconds : 0
    }
}

/// A generation request as JSON (the body of `POST /v1/jindou/generate`).
public struct GenerationRequestBody: Codable, Sendable {
    public var promptIDs: [Int]
    public var maxNewTokens: Int?
    public var temperature: Float?
    public var topK: Int?
    public var topP: Float?
    public var seed: UInt64?
    public var expertsPerToken: ExpertsPerToken?
    public var ignoreEOS: Bool?
    public var emitLogits: Bool?
    /// false: this request does not use the server's speculative decoding.
    public var speculative: Bool?

    enum CodingKeys: String, CodingKey {
        case promptIDs = "prompt_ids"
        case maxNewTokens = "max_new_tokens"
        case temperature
        case topK = "top_k"
        case topP = "top_p"
        case seed
        case expertsPerToken = "experts_per_token"
        case ignoreEOS = "ignore_eos"
        case emitLogits = "emit_logits"
        case speculative
    }

    public init(promptIDs: [Int], maxNewTokens: Int? = nil, temperature: Float? = nil, topK: Int? = nil, topP: Float? = nil,
                seed: UInt64? = nil, expertsPerToken: ExpertsPerToken? = nil, ignoreEOS: Bool? = nil, emitLogits: Bool? = nil,
                speculative: Bool? = nil) {
        self.speculative = speculative
        self.promptIDs = promptIDs
        self.maxNewTokens = maxNewTokens
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.seed = seed
        self.expertsPerToken = expertsPerToken
        self.ignoreEOS = ignoreEOS
        self.emitLogits = emitLogits
    }

    public var request: GenerationRequest {
        var request = GenerationRequest(
            promptTokenIDs: promptIDs, maxNewTokens: maxNewTokens ?? 16,
            sampling: SamplingParameters(temperature: temperature ?? 0, topK: topK ?? 0, topP: topP ?? 1, seed: seed),
            expertsPerToken: expertsPerToken ?? .configured, stopTokenIDs: ignoreEOS == true ? [] : nil,
            returnLastPromptLogits: emitLogits ?? false)
        request.speculative = speculative ?? true
        return request
    }
}
