// K-EXAONE (`exaone_moe`, 236B-A23B), mirroring transformers' `models/exaone_moe/
// modular_exaone_moe.py`:
// - `ExaoneMoeAttention(Exaone4Attention)`: GQA with per-head q/k RMSNorm before rotary;
//   sliding layers (`layer_types`, from `sliding_window_pattern`: every pattern-th layer
//   global) attend over a window and rotate, global layers attend over everything **without
//   rotary** (NoPE) — when `sliding_window` is null every layer is global and rotates.
// - `ExaoneMoeDecoderLayer`: pre-norm; dense `ExaoneMoeMLP` or `ExaoneMoeSparseMoEBlock`
//   per `mlp_layer_types` (default: the first `first_k_dense_replace` layers dense).
// - `ExaoneMoeSparseMoEBlock(DeepseekV3MoE)` with `ExaoneMoeTopkRouter(DeepseekV3TopkRouter)`:
//   sigmoid, selection bias (stored as `mlp.e_score_correction_bias`), groups, `norm_topk_prob`
//   (+1e-20), `routed_scaling_factor`, `num_shared_experts` shared experts.

import Foundation
import JindouRouting

enum ExaoneMoeFamily: ArchitectureDefinition {
    static let architecture = Architecture.exaoneMoe
    static let modelTypes = ["exaone_moe"]
    static func describe(configJSON: Data) throws -> ModelDescription { try decode(ExaoneMoeConfiguration.self, configJSON) }
}

/// `ExaoneMoeConfig`, read from either config style (see `RopeSettings`).
struct ExaoneMoeConfiguration: DescribedConfiguration {
    var vocabSize: Int
    var hiddenSize: Int
    var intermediateSize: Int
    var numHiddenLayers: Int
    var numAttentionHeads: Int
    var numKeyValueHeads: Int
    var headDim: Int?
    var hiddenAct: String
    var maxPositionEmbeddings: Int
    var rmsNormEps: Double
    var tieWordEmbeddings: Bool
    var rope: RopeSettings
    var slidingWindow: Int?
    var slidingWindowPattern: Int?
    var layerTypes: [String]?
    var mlpLayerTypes: [String]?
    var firstKDenseReplace: Int
    var moeIntermediateSize: Int
    var numExperts: Int
    var numExpertsPerTok: Int
    var numSharedExperts: Int
    var normTopkProb: Bool
    var routedScalingFactor: Double
    var nGroup: Int
    var topkGroup: Int
    var bosTokenID: Int?
    var eosTokenID: [Int]
    var dtype: String?

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size"
        case hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size"
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
        case slidingWindow = "sliding_window"
        case slidingWindowPattern = "sliding_window_pattern"
        case layerTypes = "layer_types"
        case mlpLayerTypes = "mlp_layer_types"
        case firstKDenseReplace = "first_k_dense_replace"
        case moeIntermediateSize = "moe_intermediate_size"
        case numExperts = "num_experts"
        case numExpertsPerTok = "num_experts_per_tok"
        case numSharedExperts = "num_shared_experts"
        case normTopkProb = "norm_topk_prob"
        case routedScalingFactor = "routed_scaling_factor"
        case nGroup = "n_group"
        case topkGroup = "topk_group"
        case bosTokenID = "bos_token_id"
        case eosTokenID = "eos_token_id"
        case dtype
        case torchDtype = "torch_dtype"
    }

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        // Defaults are ExaoneMoeConfig's.
        vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? 102_400
        hiddenSize = try c.decodeIfPresent(Int.self, forKey: .hiddenSize) ?? 4096
        intermediateSize = try c.decodeIfPresent(Int.self, forKey: .intermediateSize) ?? 16384
        numHiddenLayers = try c.decodeIfPresent(Int.self, forKey: .numHiddenLayers) ?? 32
        numAttentionHeads = try c.decodeIfPresent(Int.self, forKey: .numAttentionHeads) ?? 32
        numKeyValueHeads = try c.decodeIfPresent(Int.self, forKey: .numKeyValueHeads) ?? 32
        headDim = try c.decodeIfPresent(Int.self, forKey: .headDim)
        hiddenAct = try c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? "silu"
        maxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? 2048
        rmsNormEps = try c.decodeIfPresent(Double.self, forKey: .rmsNormEps) ?? 1e-5
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? false
        rope = try RopeSettings.decode(
            from: c, parameters: .ropeParameters, theta: .ropeTheta, partialFactor: .partialRotaryFactor,
            scaling: .ropeScaling, defaultTheta: 10_000, defaultPartialFactor: 1)
        slidingWindow = try c.contains(.slidingWindow) ? c.decodeIfPresent(Int.self, forKey: .slidingWindow) : 4096
        if !c.contains(.slidingWindowPattern) {
            slidingWindowPattern = 4
        } else if try c.decodeNil(forKey: .slidingWindowPattern) {
            slidingWindowPattern = nil
        } else {
            guard let period = try? c.decode(Int.self, forKey: .slidingWindowPattern) else {
                throw ConfigurationError(field: "sliding_window_pattern", reason: "only an integer period is supported (as Exaone4Config.__post_init__ reads it)")
            }
            slidingWindowPattern = period
        }
        layerTypes = try c.decodeIfPresent([String].self, forKey: .layerTypes)
        mlpLayerTypes = try c.decodeIfPresent([String].self, forKey: .mlpLayerTypes)
        firstKDenseReplace = try c.decodeIfPresent(Int.self, forKey: .firstKDenseReplace) ?? 1
        moeIntermediateSize = try c.decodeIfPresent(Int.self, forKey: .moeIntermediateSize) ?? 1024
        numExperts = try c.decodeIfPresent(Int.self, forKey: .numExperts) ?? 64
        numExpertsPerTok = try c.decodeIfPresent(Int.self, forKey: .numExpertsPerTok) ?? 8
        numSharedExperts = try c.decodeIfPresent(Int.self, forKey: .numSharedExperts) ?? 1
        normTopkProb = try c.decodeIfPresent(Bool.self, forKey: .normTopkProb) ?? true
        routedScalingFactor = try c.decodeIfPresent(Double.self, forKey: .routedScalingFactor) ?? 2.5
        nGroup = try c.decodeIfPresent(Int.self, forKey: .nGroup) ?? 1
        topkGroup = try c.decodeIfPresent(Int.self, forKey: .topkGroup) ?? 1
        bosTokenID = try c.specialToken(.bosTokenID, default: 1)
        eosTokenID = try c.specialTokens(.eosTokenID, default: [53])
        dtype = try c.decodeIfPresent(String.self, forKey: .dtype) ?? c.decodeIfPresent(String.self, forKey: .torchDtype)
    }

    /// `Exaone4Config.__post_init__`'s layer types (every layer global without a window).
    func resolvedLayerTypes() throws -> [String] {
        if let layerTypes { return layerTypes }
        guard slidingWindow != nil else { return Array(repeating: "full_attention", count: numHiddenLayers) }
        guard let period = slidingWindowPattern, period >= 1 else {
            throw ConfigurationError(field: "sliding_window_pattern", reason: "must be at least 1 with a sliding_window")
        }
        return (0..<numHiddenLayers).map { ($0 + 1) % period != 0 ? "sliding_attention" : "full_attention" }
    }

    func description() throws -> ModelDescription {
        guard hiddenAct == "silu" else { throw ConfigurationError(field: "hidden_act", reason: "'\(hiddenAct)' is not supported (silu only)") }
        let slides = try LayerTypes.sliding(resolvedLayerTypes(), layers: numHiddenLayers)
        if slides.contains(true) && (slidingWindow ?? 0) < 1 {
            throw ConfigurationError(field: "sliding_window", reason: "sliding_attention layers need a window of at least 1")
        }
        let layers = try LayerTypes.feedForward(mlpLayerTypes ?? (0..<numHiddenLayers).map { $0 < firstKDenseReplace ? "dense" : "sparse" },
                                                layers: numHiddenLayers, intermediateSize: intermediateSize)
        let headDimension = headDim ?? hiddenSize / max(1, numAttentionHeads)
        var attention = AttentionShape(
            heads: numAttentionHeads, keyValueHeads: numKeyValueHeads, headDimension: headDimension,
            rotaryDimension: rope.rotaryDimension(headDimension: headDimension), ropeTheta: rope.theta,
            queryKeyNorm: true, queryKeyValueBias: false, outputBias: false, slidingWindow: nil,
            ropeScaling: try rope.scaling(maxPositionEmbeddings: maxPositionEmbeddings))
        if slidingWindow != nil {
            // Exaone4Attention.forward: rotary only when sliding_window is None or the layer slides.
            attention.layerWindows = slides.map { $0 ? slidingWindow : nil }
            attention.layerRotary = slides
        }
        var description = ModelDescription(
            architecture: .exaoneMoe,
            vocabularySize: vocabSize,
            hiddenSize: hiddenSize,
            attention: attention,
            rmsNormEpsilon: Float(rmsNormEps),
            tieWordEmbeddings: tieWordEmbeddings,
            layers: layers,
            router: RouterConfiguration(
                expertCount: numExperts, expertsPerToken: numExpertsPerTok, scoring: .sigmoid,
                normalizeTopK: normTopkProb, routedScalingFactor: Float(routedScalingFactor),
                groupCount: nGroup, groupsPerToken: topkGroup, normalizationEpsilon: 1e-20),
            hasCorrectionBias: true,
            moeIntermediateSize: moeIntermediateSize,
            sharedExpertIntermediateSize: numSharedExperts > 0 ? moeIntermediateSize * numSharedExperts : nil,
            maxPositionEmbeddings: maxPositionEmbeddings,
            eosTokenIDs: eosTokenID,
            bosTokenID: bosTokenID,
            declaredDType: dtype)
        description.moeNames.correctionBias = "e_score_correction_bias"
        return description
    }
}
