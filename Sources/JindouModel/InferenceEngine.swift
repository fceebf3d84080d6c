import Foundation
import JindouNumerics
import JindouRouting

/// Why generation stopped.
public enum FinishReason: String, Sendable, Codable, Equatable {
    /// `max_new_tokens` reached.
    case length
    /// An EOS / stop token was produced (it is included in the output).
    case stop
}

/// One generation: prompt, budget, sampling and elastic experts.
public struct GenerationRequest: Sendable {
    public var promptTokenIDs: [Int]
    public var maxNewTokens: Int
    public var sampling: SamplingParameters
    public var expertsPerToken: ExpertsPerToken
    /// Tokens that end generation; nil = the model's EOS ids (config + generation_config).
    public var stopTokenIDs: Set<Int>?
    /// Return the float32 logits of the last prompt position.
    public var returnLastPromptLogits: Bool
    /// Images in the prompt (vision-language models; see `InferenceEngine.multimodal`).
    public var multimodal: MultimodalPrompt?
    /// Whether this request may use the server's speculative decoding (per-request opt-out).
    public var speculative = true
    /// Log-probabilities of each generated token and of its `logprobs` most likely
    /// alternatives (nil: none; 0: the chosen token's only).
    public var logprobs: Int? = nil
    /// Constrained decoding: which tokens may come next (structured outputs).
    public var constraint: (any TokenConstraint)? = nil
    /// Who asked (the HTTP peer's address): the scheduler caps queued requests per client.
    public var clientKey: String? = nil

    /// Speculation runs for this request: asked for, and the choice does not depend on the
    /// history that drafts would change (penalties, bias, a constraint).
    public var speculates: Bool { speculative && !sampling.adjustsLogits && constraint == nil }

    public init(
        promptTokenIDs: [Int], maxNewTokens: Int, sampling: SamplingParameters = .greedy,
        expertsPerToken: ExpertsPerToken = .configured, stopTokenIDs: Set<Int>? = nil, returnLastPromptLogits: Bool = false
    ) {
        self.promptTokenIDs = promptTokenIDs
        self.maxNewTokens = maxNewTokens
        self.sampling = sampling
        self.expertsPerToken = expertsPerToken
        self.stopTokenIDs = stopTokenIDs
        self.returnLastPromptLogits = returnLastPromptLogits
        self.multimodal = nil
    }
}

public struct GenerationResult: Sendable {
    public var tokenIDs: [Int]
    public var finishReason: FinishReason
    public var lastPromptLogits: [Float]?
    public var promptTokenCount: Int
    public var prefillSeconds: Double
    public var decodeSeconds: Double
    /// What speculative decoding did (nil when it was off).
    public var speculation: SpeculationStatistics?

    public init(tokenIDs: [Int], finishReason: FinishReason, lastPromptLogits: [Float]?, promptTokenCount: Int,
                prefillSeconds: Double, decodeSeconds: Double, speculation: SpeculationStatistics? = nil) {
        self.speculation = speculation
        self.tokenIDs = tokenIDs
        self.finishReason = finishReason
        self.lastPromptLogits = lastPromptLogits
        self.promptTokenCount = promptTokenCount
        self.prefillSeconds = prefillSeconds
        self.decodeSeconds = decodeSeconds
    }

    /// Decode throughput (tokens after the first, per second).
    public var decodeTokensPerSecond: Double {
        tokenIDs.count > 1 && decodeSeconds > 0 ? Double(tokenIDs.count - 1) / decodeSeconds : 0
    }
}

/// The single-process engine: a `DecoderModel` plus an expert backend (all experts
/// in-process, or a cluster behind the coordinator).
public struct InferenceEngine: Sendable {
    public let model: DecoderModel
    public let experts: any ExpertBackend
    /// The checkpoint's MTP layer, when loaded for `--speculative mtp`.
    public let predictor: MultiTokenPredictor?

    public init(model: DecoderModel, experts: any ExpertBackend, predictor: MultiTokenPredictor? = nil) {
        self.model = model
        self.experts = experts
        self.predictor = predictor
    }

    /// Loads a checkpoint with every expert in this process. With `prefault`, every mapped
    /// page is read once up front (progress bar on a terminal).
    /// With `expertFormat`, the routed experts are re-encoded (Q8_0, Q4_K) after loading.
    /// With `denseFormat`, the coordinator-side matrices too (see `DecoderModel.init`).
    /// `directory` is a checkpoint directory or a GGUF file (`openWeightSource`).
    /// With `multiTokenPrediction`, the checkpoint's MTP layer is mapped too (`--speculative mtp`).
    public static func load(directory: String, prefault: Bool = false, expertFormat: BlockFormat? = nil,
                            denseFormat: BlockFormat? = nil, multiTokenPrediction: Bool = false) throws -> InferenceEngine {
        try load(source: try openWeightSource(directory), prefault: prefault, expertFormat: expertFormat, denseFormat: denseFormat,
                 multiTokenPrediction: multiTokenPrediction)
    }

    /// Loads every weight of `checkpoint` (a checkpoint directory or a GGUF file), as `load(directory:)`.
    public static func load(source checkpoint: any WeightSource, prefault: Bool = false, expertFormat: BlockFormat? = nil,
                            denseFormat: BlockFormat? = nil, multiTokenPrediction: Bool = false) throws -> InferenceEngine {
        let description = try checkpoint.modelDescription()
        let model = try DecoderModel(description: description, checkpoint: checkpoint, denseFormat: denseFormat)
        var shard = try ExpertShard(description: description, checkpoint: checkpoint, keys: description.allExperts)
        if let expertFormat { shard = try shard.quantized(expertFormat) }
        let predictor = multiTokenPrediction ? try MultiTokenPredictor(description: description, checkpoint: checkpoint, denseFormat: denseFormat) : nil
        if prefault {
            let all = TensorSet(tensors: [:], regions: model.mappedRegions + shard.tensors.regions + (predictor?.mappedRegions ?? []))
            all.prefault()
        }
        return InferenceEngine(model: model, experts: shard, predictor: predictor)
    }

    public var description: ModelDescription { model.description }

    /// The MTP layer, or the error that says how to get one.
    func requirePredictor() throws -> MultiTokenPredictor {
        guard let predictor else {
            throw EngineError.invalidParameter(
                name: "speculative", reason: description.ignoredPredictionLayers > 0
                    ? "mtp needs the MTP layer loaded (load the engine with multiTokenPrediction)"
                    : "mtp needs the checkpoint's multi-token-prediction layers, and this one has none")
        }
        return predictor
    }

    /// Runs the vision tower on `images` and lays the features over the image tokens of
    /// `tokens` (which must hold, per image in order, one run of its token count).
    public func multimodal(tokens: [Int], images: [PixelPatches]) throws -> MultimodalPrompt {
        guard let vision = model.vision, let shape = description.vision else {
            throw EngineError.invalidParameter(name: "images", reason: "\(description.architecture.rawValue) does not take images")
        }
        let features = try vision.encode(images)
        return try MultimodalPrompt(tokens: tokens, imageTokenID: shape.imageTokenID, grids: images.map(\.grid),
                                    mergeSize: shape.spatialMergeSize, features: features,
                                    mrope: description.attention.mropeSection != nil)
    }

    /// Logits at every prompt position (a fresh cache; nothing is kept).
    public func promptLogits(_ tokens: [Int], expertsPerToken: ExpertsPerToken = .configured,
                             multimodal: MultimodalPrompt? = nil) async throws -> [[Float]] {
        guard !tokens.isEmpty else { throw EngineError.emptyPrompt }
        let cache = model.makeCache()
        let flat = try await model.forward([SequenceStep(cache: cache, tokens: tokens, expertsPerToken: expertsPerToken, logits: .all,
                                                         multimodal: multimodal)], experts: experts)[0]
        let v = description.vocabularySize
        return (0..<tokens.count).map { Array(flat[($0 * v)..<(($0 + 1) * v)]) }
    }

    /// Generates up to `maxNewTokens` tokens; `onToken` sees each one as it is chosen.
    /// `onStepLogits`, when given, sees the logits each token was chosen from. With
    /// `speculation` on (and the request not opting out), each decode step scores the pending
    /// token and up to `draftTokens` drafted ones at once (Speculation.swift).
    public func generate(
        _ request: GenerationRequest, speculation: SpeculationOptions = .off, onToken: (@Sendable (Int) -> Void)? = nil,
        onStepLogits: (@Sendable ([Float]) -> Void)? = nil
    ) async throws -> GenerationResult {
        guard !request.promptTokenIDs.isEmpty else { throw EngineError.emptyPrompt }
        guard request.maxNewTokens >= 0 else {
            throw EngineError.invalidParameter(name: "max_new_tokens", reason: "must be ≥ 0, got \(request.maxNewTokens)")
        }
        try request.sampling.validate()
        let stop = request.stopTokenIDs ?? Set(description.eosTokenIDs)
        var sampler = Sampler(request.sampling)
        let cache = model.makeCache()
        let speculate = speculation.mode != .off && request.speculates
        let predictor = speculate && speculation.mode == .mtp ? try requirePredictor() : nil
        var statistics = SpeculationStatistics()

        let start = Date()
        /// One forward step of `tokens`; with MTP, also the normed hidden rows of all of them.
        func run(_ tokens: [Int], logits selection: LogitsSelection) async throws -> (logits: [Float], hidden: [Float]) {
            var step = SequenceStep(cache: cache, tokens: tokens, expertsPerToken: request.expertsPerToken, logits: selection,
                                    multimodal: request.multimodal)
            guard predictor != nil else { return (try await model.forward([step], experts: experts)[0], []) }
            step.hidden = .all
            let output = try await model.forwardReturningHidden([step], experts: experts)
            return (output.logits[0], output.hidden[0])
        }
        var (logits, hidden) = try await run(request.promptTokenIDs, logits: .last)
        let prefillSeconds = Date().timeIntervalSince(start)
        let lastPromptLogits = request.returnLastPromptLogits ? logits : nil

        var generated: [Int] = []
        var finish = FinishReason.length
        var constraint = request.constraint
        /// The next token: the request's logit changes, its constraint's mask, then sampling.
        func choose(_ logits: [Float]) -> Int {
            let adjusted = request.sampling.adjusted(logits, prompt: request.promptTokenIDs, output: generated)
            let token = sampler.sample(constraint.map { $0.masked(adjusted) } ?? adjusted)
            constraint?.accept(token)
            return token
        }
        let decodeStart = Date()
        /// Appends `token`; false once generation is over.
        func emit(_ token: Int) -> Bool {
            generated.append(token)
            onToken?(token)
            if stop.contains(token) {
                finish = .stop
                return false
            }
            return generated.count < request.maxNewTokens
        }
        guard request.maxNewTokens > 0 else {
            return GenerationResult(tokenIDs: [], finishReason: .length, lastPromptLogits: lastPromptLogits,
                                    promptTokenCount: request.promptTokenIDs.count, prefillSeconds: prefillSeconds, decodeSeconds: 0)
        }
        onStepLogits?(logits)
        var pending = choose(logits)
        var going = emit(pending)
        let mtpState = predictor?.makeState(for: model)
        // The pairs MTP has not seen yet: normed hidden rows and the tokens that followed them.
        var verifiedHidden = hidden, verifiedNext = Array(request.promptTokenIDs.dropFirst()) + [pending]
        while going {
            let limit = request.maxNewTokens - generated.count - 1
            var drafts: [Int] = []
            if let predictor, let mtpState {
                drafts = try await predictor.propose([.init(state: mtpState, hidden: verifiedHidden, nextTokens: verifiedNext,
                                                            drafts: min(limit, speculation.draftTokens))], model: model)[0]
            } else if speculate {
                drafts = speculation.drafts(after: request.promptTokenIDs + generated, limit: limit)
            }
            let before = cache.length
            // A recurrent state (linear attention) keeps each verified token's, to roll back to.
            if !drafts.isEmpty { cache.keepStates(forNext: drafts.count + 1) }
            let (rows, stepHidden) = try await run([pending] + drafts, logits: drafts.isEmpty ? .last : .all)
            let v = description.vocabularySize
            var accepted = 0
            statistics.steps += 1
            statistics.drafted += drafts.count
            for i in 0...drafts.count {
                logits = Array(rows[(i * v)..<((i + 1) * v)])
                onStepLogits?(logits)
                let (token, kept) = i < drafts.count ? sampler.verify(logits, draft: drafts[i])
                    : (choose(logits), false)
                statistics.tokens += 1
                if kept { accepted += 1 }
                going = emit(token)
                pending = token
                if !kept || !going { break }
            }
            statistics.accepted += accepted
            // Keep the pending token and the accepted drafts; the rest were rejected.
            cache.truncate(to: before + 1 + accepted)
            let h = description.hiddenSize
            if predictor != nil {
                verifiedHidden = Array(stepHidden[0..<((1 + accepted) * h)])
                verifiedNext = Array(drafts.prefix(accepted)) + [pending]
            }
        }
        return GenerationResult(
            tokenIDs: generated, finishReason: finish, lastPromptLogits: lastPromptLogits,
            promptTokenCount: request.promptTokenIDs.count, prefillSeconds: prefillSeconds,
            decodeSeconds: Date().timeIntervalSince(decodeStart), speculation: speculate ? statistics : nil)
    }
}
