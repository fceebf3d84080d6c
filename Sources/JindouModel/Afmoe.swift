// Arcee's Trinity (`afmoe`: Trinity-Nano, Trinity-Mini, Trinity-Large), mirroring
// transformers' `models/afmoe/modeling_afmoe.py`:
// - `AfmoeAttention`: GQA with per-head q/k RMSNorm; rotary only on sliding layers (global
//   layers are NoPE); a sigmoid output gate `output · σ(gate_proj(x))` before `o_proj`
//   (`AttentionShape.outputGate`); `layer_types` from `global_attn_every_n_layers` (every
//   n-th layer global).
// - `AfmoeDecoderLayer`: sandwich norms — `input_layernorm` before attention and
//   `post_attention_layernorm` on its output, `pre_mlp_layernorm` before the MLP and
//   `post_mlp_layernorm` on its output (`LayerNormNames`); the first `num_dense_layers`
//   layers dense.
// - `AfmoeSparseMoeBlock` / `AfmoeTokenChoiceRouter`: sigmoid scores, `mlp.expert_bias` for
//   the choice only, renormalised (+1e-20), times `route_scale`; `num_shared_experts` shared
//   experts; the router Linear at `mlp.router.gate`.
// - `AfmoeModel`: embeddings × √hidden when `mup_enabled`.

import Foundation
import JindouRouting

enum AfmoeFamily: ArchitectureDefinition {
    static let architecture = Architecture.afmoe
    static let modelTypes = ["afmoe"]
    static func describe(configJSON: Data) throws -> ModelDescription { try decode(AfmoeConfiguration.self, configJSON) }
}

/// `AfmoeConfig`, read from either config style (see `RopeSettings`).
struct AfmoeConfiguration: DescribedConfiguration {
    var vocabSize: Int
    var hiddenSize: Int
    var intermediateSize: Int
    var moeIntermediateSize: Int
    var numHiddenLayers: Int
    var numDenseLayers: Int
    var numAttentionHeads: Int
    var numKeyValueHeads: Int?
    var headDim: Int?
    var hiddenAct: String
    var maxPositionEmbeddings: Int
    var rmsNormEps: Double
    var tieWordEmbeddings: Bool
    var rope: RopeSettings
    var numExperts: Int
    var numExpertsPerTok: Int
    var numSharedExperts: Int
    var routeScale: Double
    var globalAttnEveryNLayers: Int
    var slidingWindow: Int?
    var layerTypes: [String]?
    var mupEnabled: Bool
    var attentionBias: Bool
    var bosTokenID: Int?
    var eosTokenID: [Int]
    var dtype: String?

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size"
        case hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size"
        case moeIntermediateSize = "moe_intermediate_size"
        case numHiddenLayers = "num_hidden_layers"
        case numDenseLayers = "num_dense_layers"
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
        case numExperts = "num_experts"
        case numExpertsPerTok = "num_experts_per_tok"
        case numSharedExperts = "num_shared_experts"
        case routeScale = "route_scale"
        case globalAttnEveryNLayers = "global_attn_every_n_layers"
        case slidingWindow = "sliding_window"
        case layerTypes = "layer_types"
        case mupEnabled = "mup_enabled"
        case attentionBias = "attention_bias"
        case bosTokenID = "bos_token_id"
        case eosTokenID = "eos_token_id"
        case dtype
        case torchDtype = "torch_dtype"
    }

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        // Defaults are AfmoeConfig's.
        vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? 200_192
        hiddenSize = try c.decodeIfPresent(Int.self, forKey: .hiddenSize) ?? 2048
        intermediateSize = try c.decodeIfPresent(Int.self, forKey: .intermediateSize) ?? 6144
        moeIntermediateSize = try c.decodeIfPresent(Int.self, forKey: .moeIntermediateSize) ?? 1408
        numHiddenLayers = try c.decodeIfPresent(Int.self, forKey: .numHiddenLayers) ?? 32
        numDenseLayers = try c.decodeIfPresent(Int.self, forKey: .numDenseLayers) ?? 1
        numAttentionHeads = try c.decodeIfPresent(Int.self, forKey: .numAttentionHeads) ?? 16
        numKeyValueHeads = try c.decodeIfPresent(Int.self, forKey: .numKeyValueHeads)
        headDim = try c.contains(.headDim) ? c.decodeIfPresent(Int.self, forKey: .headDim) : 128
        hiddenAct = try c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? "silu"
        maxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? 16_384
        rmsNormEps = try c.decodeIfPresent(Double.self, forKey: .rmsNormEps) ?? 1e-5
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? false
        rope = try RopeSettings.decode(
            from: c, parameters: .ropeParameters, theta: .ropeTheta, partialFactor: .partialRotaryFactor,
            scaling: .ropeScaling, defaultTheta: 10_000, defaultPartialFactor: 1)
        numExperts = try c.decodeIfPresent(Int.self, forKey: .numExperts) ?? 64
        numExpertsPerTok = try c.decodeIfPresent(Int.self, forKey: .numExpertsPerTok) ?? 6
        numSharedExperts = try c.decodeIfPresent(Int.self, forKey: .numSharedExperts) ?? 2
        routeScale = try c.decodeIfPresent(Double.self, forKey: .routeScale) ?? 1
        globalAttnEveryNLayers = try c.decodeIfPresent(Int.self, forKey: .globalAttnEveryNLayers) ?? 4
        slidingWindow = try c.contains(.slidingWindow) ? c.decodeIfPresent(Int.self, forKey: .slidingWindow) : 1024
        layerTypes = try c.decodeIfPresent([String].self, forKey: .layerTypes)
        mupEnabled = try c.decodeIfPresent(Bool.self, forKey: .mupEnabled) ?? false
        attentionBias = try c.decodeIfPresent(Bool.self, forKey: .attentionBias) ?? false
        bosTokenID = try c.decodeIfPresent(Int.self, forKey: .bosTokenID)
        eosTokenID = try c.decodeIfPresent(TokenIDList.self, forKey: .eosTokenID)?.values ?? []
        dtype = try c.decodeIfPresent(String.self, forKey: .dtype) ?? c.decodeIfPresent(String.self, forKey: .torchDtype)
    }

    /// `AfmoeConfig.__post_init__`'s layer types: every `global_attn_every_n_layers`-th layer global.
    func resolvedLayerTypes() throws -> [String] {
        if let layerTypes { return layerTypes }
        guard globalAttnEveryNLayers >= 1 else {
            throw ConfigurationError(field: "global_attn_every_n_layers", reason: "must be at least 1")
        }
        return (0..<numHiddenLayers).map { ($0 + 1) % globalAttnEveryNLayers != 0 ? "sliding_attention" : "full_attention" }
    }

    func description() throws -> ModelDescription {
        // AfmoeMLP and AfmoeExperts apply ACT2FN[hidden_act] to the gate.
        guard hiddenAct == "silu" else { throw ConfigurationError(field: "hidden_act", reason: "'\(hiddenAct)' is not supported (silu only)") }
        let slides = try LayerTypes.sliding(resolvedLayerTypes(), layers: numHiddenLayers)
        if slides.contains(true) && (slidingWindow ?? 0) < 1 {
            throw ConfigurationError(field: "sliding_window", reason: "sliding_attention layers need a window of at least 1")
        }
        let headDimension = headDim ?? hiddenSize / max(1, numAttentionHeads)
        var attention = AttentionShape(
            heads: numAttentionHeads, keyValueHeads: numKeyValueHeads ?? numAttentionHeads, headDimension: headDimension,
            rotaryDimension: rope.rotaryDimension(headDimension: headDimension), ropeTheta: rope.theta,
            queryKeyNorm: true, queryKeyValueBias: attentionBias, outputBias: attentionBias, slidingWindow: nil,
            ropeScaling: try rope.scaling(maxPositionEmbeddings: maxPositionEmbeddings))
        // AfmoeAttention.forward: rotary on the local (sliding) layers only.
        attention.layerWindows = slides.map { $0 ? slidingWindow : nil }
        attention.layerRotary = slides
        attention.outputGate = true
        var description = ModelDescription(
            architecture: .afmoe,
            vocabularySize: vocabSize,
            hiddenSize: hiddenSize,
            attention: attention,
            rmsNormEpsilon: Float(rmsNormEps),
            tieWordEmbeddings: tieWordEmbeddings,
            layers: (0..<numHiddenLayers).map { $0 < numDenseLayers ? .dense(intermediateSize: intermediateSize) : .sparse },
            router: RouterConfiguration(
                expertCount: numExperts, expertsPerToken: numExpertsPerTok, scoring: .sigmoid, normalizeTopK: true,
                routedScalingFactor: Float(routeScale), normalizationEpsilon: 1e-20),
            hasCorrectionBias: true,
            moeIntermediateSize: moeIntermediateSize,
            sharedExpertIntermediateSize: numSharedExperts > 0 ? moeIntermediateSize * numSharedExperts : nil,
            maxPositionEmbeddings: maxPositionEmbeddings,
            eosTokenIDs: eosTokenID,
            bosTokenID: bosTokenID,
            declaredDType: dtype)
        description.moeNames.router = "router.gate.weight"
        description.moeNames.correctionBias = "expert_bias"
        description.layerNorms.preFeedForward = "pre_mlp_layernorm"
        description.layerNorms.attentionOutput = "post_attention_layernorm"
        description.layerNorms.feedForwardOutput = "post_mlp_layernorm"
        if mupEnabled { description.embeddingScale = Float(Double(hiddenSize).squareRoot()) }
        return description
    }
}
