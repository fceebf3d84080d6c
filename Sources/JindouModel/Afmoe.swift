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
    var core: DecoderCore
    var moeIntermediateSize: Int
    var numDenseLayers: Int
    var numExperts: Int
    var numExpertsPerTok: Int
    var numSharedExperts: Int
    var routeScale: Double
    var globalAttnEveryNLayers: Int
    var slidingWindow: Int?
    var layerTypes: [String]?
    var mupEnabled: Bool

    /// AfmoeConfig's defaults; its `head_dim` of 128 is set in `init` (a null there means none).
    static let defaults = DecoderCore.Defaults(
        vocabSize: 200_192, hiddenSize: 2048, intermediateSize: 6144, numHiddenLayers: 32, numAttentionHeads: 16,
        maxPositionEmbeddings: 16_384, rmsNormEps: 1e-5, ropeTheta: 10_000)

    enum CodingKeys: String, CodingKey {
        case headDim = "head_dim"
        case moeIntermediateSize = "moe_intermediate_size"
        case numDenseLayers = "num_dense_layers"
        case numExperts = "num_experts"
        case numExpertsPerTok = "num_experts_per_tok"
        case numSharedExperts = "num_shared_experts"
        case routeScale = "route_scale"
        case globalAttnEveryNLayers = "global_attn_every_n_layers"
        case slidingWindow = "sliding_window"
        case layerTypes = "layer_types"
        case mupEnabled = "mup_enabled"
    }

    init(from decoder: Decoder) throws {
        core = try DecoderCore(from: decoder, defaults: Self.defaults)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        // Defaults are AfmoeConfig's.
        if !c.contains(.headDim) { core.headDim = 128 }
        moeIntermediateSize = try c.decodeIfPresent(Int.self, forKey: .moeIntermediateSize) ?? 1408
        numDenseLayers = try c.decodeIfPresent(Int.self, forKey: .numDenseLayers) ?? 1
        numExperts = try c.decodeIfPresent(Int.self, forKey: .numExperts) ?? 64
        numExpertsPerTok = try c.decodeIfPresent(Int.self, forKey: .numExpertsPerTok) ?? 6
        numSharedExperts = try c.decodeIfPresent(Int.self, forKey: .numSharedExperts) ?? 2
        routeScale = try c.decodeIfPresent(Double.self, forKey: .routeScale) ?? 1
        globalAttnEveryNLayers = try c.decodeIfPresent(Int.self, forKey: .globalAttnEveryNLayers) ?? 4
        slidingWindow = try c.contains(.slidingWindow) ? c.decodeIfPresent(Int.self, forKey: .slidingWindow) : 1024
        layerTypes = try c.decodeIfPresent([String].self, forKey: .layerTypes)
        mupEnabled = try c.decodeIfPresent(Bool.self, forKey: .mupEnabled) ?? false
    }

    /// `AfmoeConfig.__post_init__`'s layer types: every `global_attn_every_n_layers`-th layer global.
    func resolvedLayerTypes() throws -> [String] {
        if let layerTypes { return layerTypes }
        guard globalAttnEveryNLayers >= 1 else {
            throw ConfigurationError(field: "global_attn_every_n_layers", reason: "must be at least 1")
        }
        return (0..<core.numHiddenLayers).map { ($0 + 1) % globalAttnEveryNLayers != 0 ? "sliding_attention" : "full_attention" }
    }

    func description() throws -> ModelDescription {
        // AfmoeMLP and AfmoeExperts apply ACT2FN[hidden_act] to the gate.
        let (numHiddenLayers, hiddenSize, intermediateSize) = (core.numHiddenLayers, core.hiddenSize, core.intermediateSize)
        guard core.hiddenAct == "silu" else { throw ConfigurationError(field: "hidden_act", reason: "'\(core.hiddenAct)' is not supported (silu only)") }
        let slides = try LayerTypes.sliding(resolvedLayerTypes(), layers: numHiddenLayers)
        if slides.contains(true) && (slidingWindow ?? 0) < 1 {
            throw ConfigurationError(field: "sliding_window", reason: "sliding_attention layers need a window of at least 1")
        }
        var attention = try core.groupedAttention(queryKeyNorm: true, queryKeyValueBias: core.attentionBias, outputBias: core.attentionBias)
        // AfmoeAttention.forward: rotary on the local (sliding) layers only.
        attention.layerWindows = slides.map { $0 ? slidingWindow : nil }
        attention.layerRotary = slides
        attention.outputGate = true
        var description = core.description(
            architecture: .afmoe,
            attention: attention,
            layers: (0..<numHiddenLayers).map { $0 < numDenseLayers ? .dense(intermediateSize: intermediateSize) : .sparse },
            router: RouterConfiguration(
                expertCount: numExperts, expertsPerToken: numExpertsPerTok, scoring: .sigmoid, normalizeTopK: true,
                routedScalingFactor: Float(routeScale), normalizationEpsilon: 1e-20),
            hasCorrectionBias: true, moeIntermediateSize: moeIntermediateSize,
            sharedExpertIntermediateSize: numSharedExperts > 0 ? moeIntermediateSize * numSharedExperts : nil)
        description.moeNames.router = "router.gate.weight"
        description.moeNames.correctionBias = "expert_bias"
        description.layerNorms.preFeedForward = "pre_mlp_layernorm"
        description.layerNorms.attentionOutput = "post_attention_layernorm"
        description.layerNorms.feedForwardOutput = "post_mlp_layernorm"
        if mupEnabled { description.embeddingScale = Float(Double(hiddenSize).squareRoot()) }
        return description
    }
}
