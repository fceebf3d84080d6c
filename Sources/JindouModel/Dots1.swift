// dots.llm1 (rednote-hilab, 142B-A14B), mirroring transformers' `models/dots1/
// modular_dots1.py`, which states the family as the composition it is:
// - `Dots1Attention(Qwen3Attention)`: GQA with per-head q/k RMSNorm before full rotary;
//   `attention_bias` puts biases on q, k, v and o (Qwen3, unlike GLM4's q/k/v only).
// - `Dots1DecoderLayer(DeepseekV3DecoderLayer)`: layers below `first_k_dense_replace` are
//   dense `Dots1MLP`, the rest `Dots1MoE(DeepseekV3MoE)` = routed experts + shared experts
//   (`moe_intermediate_size × n_shared_experts`).
// - `Dots1TopkRouter(DeepseekV3TopkRouter)`: sigmoid scores, `e_score_correction_bias` for
//   the choice only, group-limited top-k, `norm_topk_prob` (+1e-20), `routed_scaling_factor`.
// - `layer_types` (or `sliding_window` from layer `max_window_layers` on) makes layers
//   sliding (`Qwen3Attention.sliding_window` on those layers only): per-layer windows.

import Foundation
import JindouRouting

enum Dots1Family: ArchitectureDefinition {
    static let architecture = Architecture.dots1
    static let modelTypes = ["dots1"]
    static func describe(configJSON: Data) throws -> ModelDescription { try decode(Dots1Configuration.self, configJSON) }
}

/// `Dots1Config`, read from either config style (see `RopeSettings`).
struct Dots1Configuration: DescribedConfiguration {
    var vocabSize: Int
    var hiddenSize: Int
    var intermediateSize: Int
    var moeIntermediateSize: Int
    var numHiddenLayers: Int
    var numAttentionHeads: Int
    var numKeyValueHeads: Int
    var headDim: Int?
    var hiddenAct: String
    var maxPositionEmbeddings: Int
    var rmsNormEps: Double
    var tieWordEmbeddings: Bool
    var rope: RopeSettings
    var attentionBias: Bool
    var nSharedExperts: Int?
    var nRoutedExperts: Int?
    var numExpertsPerTok: Int?
    var nGroup: Int
    var topkGroup: Int
    var firstKDenseReplace: Int
    var normTopkProb: Bool
    var routedScalingFactor: Double
    var slidingWindow: Int?
    var maxWindowLayers: Int?
    var layerTypes: [String]?
    var bosTokenID: Int?
    var eosTokenID: [Int]
    var dtype: String?

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size"
        case hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size"
        case moeIntermediateSize = "moe_intermediate_size"
        case numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads"
        case numKeyValueHeads = "num_key_value_heads"
        case headDim = "head_dim"
        case hiddenAct = "hidden_act"
        case maxPositionEmbeddings = "max_position_embeddings"
        case rmsNormEps = "rms_norm_eps"
        case tieWordEmbeddings = "tie_word_embeddings"
        case ropeParameters = "rope_parameters"
        case ropeTheta = "rope_theta"
        case partialRotaryFactor = "partial_rotary_factor"
        case ropeScaling = "rope_scaling"
        case attentionBias = "attention_bias"
        case nSharedExperts = "n_shared_experts"
        case nRoutedExperts = "n_routed_experts"
        case numLocalExperts = "num_local_experts"
        case numExpertsPerTok = "num_experts_per_tok"
        case nGroup = "n_group"
        case topkGroup = "topk_group"
        case firstKDenseReplace = "first_k_dense_replace"
        case normTopkProb = "norm_topk_prob"
        case routedScalingFactor = "routed_scaling_factor"
        case slidingWindow = "sliding_window"
        case maxWindowLayers = "max_window_layers"
        case layerTypes = "layer_types"
        case bosTokenID = "bos_token_id"
        case eosTokenID = "eos_token_id"
        case dtype
        case torchDtype = "torch_dtype"
    }

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        // Defaults are Dots1Config's.
        vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? 152_064
        hiddenSize = try c.decodeIfPresent(Int.self, forKey: .hiddenSize) ?? 4608
        intermediateSize = try c.decodeIfPresent(Int.self, forKey: .intermediateSize) ?? 10944
        moeIntermediateSize = try c.decodeIfPresent(Int.self, forKey: .moeIntermediateSize) ?? 1408
        numHiddenLayers = try c.decodeIfPresent(Int.self, forKey: .numHiddenLayers) ?? 62
        numAttentionHeads = try c.decodeIfPresent(Int.self, forKey: .numAttentionHeads) ?? 32
        numKeyValueHeads = try c.decodeIfPresent(Int.self, forKey: .numKeyValueHeads) ?? numAttentionHeads
        headDim = try c.decodeIfPresent(Int.self, forKey: .headDim)
        hiddenAct = try c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? "silu"
        maxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? 2048
        rmsNormEps = try c.decodeIfPresent(Double.self, forKey: .rmsNormEps) ?? 1e-6
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? false
        rope = try RopeSettings.decode(
            from: c, parameters: .ropeParameters, theta: .ropeTheta, partialFactor: .partialRotaryFactor,
            scaling: .ropeScaling, defaultTheta: 10_000, defaultPartialFactor: 1)
        attentionBias = try c.decodeIfPresent(Bool.self, forKey: .attentionBias) ?? false
        nSharedExperts = try c.decodeIfPresent(Int.self, forKey: .nSharedExperts)
        nRoutedExperts = try c.decodeIfPresent(Int.self, forKey: .nRoutedExperts) ?? c.decodeIfPresent(Int.self, forKey: .numLocalExperts)
        numExpertsPerTok = try c.decodeIfPresent(Int.self, forKey: .numExpertsPerTok)
        nGroup = try c.decodeIfPresent(Int.self, forKey: .nGroup) ?? 1
        topkGroup = try c.decodeIfPresent(Int.self, forKey: .topkGroup) ?? 1
        firstKDenseReplace = try c.decodeIfPresent(Int.self, forKey: .firstKDenseReplace) ?? 0
        normTopkProb = try c.decodeIfPresent(Bool.self, forKey: .normTopkProb) ?? false
        routedScalingFactor = try c.decodeIfPresent(Double.self, forKey: .routedScalingFactor) ?? 1
        // `sliding_window` defaults to 4096 in Dots1Config, but only layers from
        // `max_window_layers` (default: all of them) on slide.
        slidingWindow = try c.contains(.slidingWindow) ? c.decodeIfPresent(Int.self, forKey: .slidingWindow) : 4096
        maxWindowLayers = try c.decodeIfPresent(Int.self, forKey: .maxWindowLayers)
        layerTypes = try c.decodeIfPresent([String].self, forKey: .layerTypes)
        bosTokenID = try c.decodeIfPresent(Int.self, forKey: .bosTokenID)
        eosTokenID = try c.decodeIfPresent(TokenIDList.self, forKey: .eosTokenID)?.values ?? []
        dtype = try c.decodeIfPresent(String.self, forKey: .dtype) ?? c.decodeIfPresent(String.self, forKey: .torchDtype)
    }

    /// `Dots1Config.__post_init__`'s layer types.
    func resolvedLayerTypes() -> [String] {
        layerTypes ?? (0..<numHiddenLayers).map { i in
            slidingWindow != nil && i >= (maxWindowLayers ?? 62) ? "sliding_attention" : "full_attention"
        }
    }

    func description() throws -> ModelDescription {
        // DeepseekV3MoE multiplies by these; Dots1Config leaves them None.
        guard let routed = nRoutedExperts else { throw ConfigurationError(field: "n_routed_experts", reason: "is required") }
        guard let shared = nSharedExperts else { throw ConfigurationError(field: "n_shared_experts", reason: "is required") }
        guard let perToken = numExpertsPerTok else { throw ConfigurationError(field: "num_experts_per_tok", reason: "is required") }
        guard hiddenAct == "silu" else { throw ConfigurationError(field: "hidden_act", reason: "'\(hiddenAct)' is not supported (silu only)") }
        let slides = try LayerTypes.sliding(resolvedLayerTypes(), layers: numHiddenLayers)
        let sliding = slides.contains(true)
        guard !sliding || (slidingWindow ?? 0) >= 1 else {
            throw ConfigurationError(field: "sliding_window", reason: "sliding_attention layers need a window of at least 1")
        }
        let headDimension = headDim ?? hiddenSize / max(1, numAttentionHeads)
        var description = ModelDescription(
            architecture: .dots1,
            vocabularySize: vocabSize,
            hiddenSize: hiddenSize,
            attention: AttentionShape(
                heads: numAttentionHeads, keyValueHeads: numKeyValueHeads, headDimension: headDimension,
                rotaryDimension: rope.rotaryDimension(headDimension: headDimension), ropeTheta: rope.theta,
                queryKeyNorm: true, queryKeyValueBias: attentionBias, outputBias: attentionBias,
                slidingWindow: nil,
                ropeScaling: try rope.scaling(maxPositionEmbeddings: maxPositionEmbeddings)),
            rmsNormEpsilon: Float(rmsNormEps),
            tieWordEmbeddings: tieWordEmbeddings,
            // DeepseekV3DecoderLayer.__init__
            layers: (0..<numHiddenLayers).map { $0 >= firstKDenseReplace ? .sparse : .dense(intermediateSize: intermediateSize) },
            router: RouterConfiguration(
                expertCount: routed, expertsPerToken: perToken, scoring: .sigmoid,
                normalizeTopK: normTopkProb, routedScalingFactor: Float(routedScalingFactor),
                groupCount: nGroup, groupsPerToken: topkGroup, normalizationEpsilon: 1e-20),
            hasCorrectionBias: true,
            moeIntermediateSize: moeIntermediateSize,
            sharedExpertIntermediateSize: shared > 0 ? moeIntermediateSize * shared : nil,
            maxPositionEmbeddings: maxPositionEmbeddings,
            eosTokenIDs: eosTokenID,
            bosTokenID: bosTokenID,
            declaredDType: dtype)
        if sliding { description.attention.layerWindows = slides.map { $0 ? slidingWindow : nil } }
        return description
    }
}
