// The config.json keys every decoder family repeats, read once. transformers' `*Config`
// classes each re-declare them in `__init__` with their own defaults (e.g.
// `Qwen3MoeConfig(vocab_size=151936, hidden_size=2048, …)`), so a family passes its class's
// defaults and keeps only its own keys in its file.
// - `DecoderCore`: vocabulary, widths, layers, heads, `head_dim`, `hidden_act`, positions,
//   norm ε, tied embeddings, rotary (`RopeSettings`, either config style), `attention_bias`,
//   special tokens and the declared dtype.
// - `RoutedExperts`: DeepSeek-V3's MoE keys (`DeepseekV3MoE`, `DeepseekV3TopkRouter`), which
//   GLM4-MoE, dots.llm1 and K-EXAONE inherit: expert width and counts, shared experts, groups,
//   `norm_topk_prob`, `routed_scaling_factor`, `first_k_dense_replace`.

import JindouRouting

/// The decoder keys every family's config.json shares, read with the family's defaults.
struct DecoderCore {
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
    var attentionBias: Bool
    var bosTokenID: Int?
    var eosTokenID: [Int]
    var dtype: String?

    /// A configuration class's defaults for the shared keys (used when a key is absent or null).
    struct Defaults {
        var vocabSize: Int
        var hiddenSize: Int
        var intermediateSize: Int
        var numHiddenLayers: Int
        var numAttentionHeads: Int
        /// nil: as many as the attention heads (the classes' `if num_key_value_heads is None`).
        var numKeyValueHeads: Int? = nil
        /// nil: none, so `headDimension` is hidden_size / num_attention_heads.
        var headDim: Int? = nil
        var hiddenAct = "silu"
        var maxPositionEmbeddings: Int
        var rmsNormEps: Double
        var tieWordEmbeddings = false
        var ropeTheta: Double
        var partialRotaryFactor = 1.0
        /// Rope types beyond `RopeSettings.supportedTypes` the family resolves itself.
        var familyRopeTypes: [String] = []
        var attentionBias = false
        /// Used when the key is absent; a null in config.json means none (`specialToken`).
        var bosTokenID: Int? = nil
        var eosTokenID: [Int] = []
    }

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
        case attentionBias = "attention_bias"
        case bosTokenID = "bos_token_id"
        case eosTokenID = "eos_token_id"
        case dtype
        case torchDtype = "torch_dtype"
    }

    init(from decoder: Decoder, defaults d: Defaults) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? d.vocabSize
        hiddenSize = try c.decodeIfPresent(Int.self, forKey: .hiddenSize) ?? d.hiddenSize
        intermediateSize = try c.decodeIfPresent(Int.self, forKey: .intermediateSize) ?? d.intermediateSize
        numHiddenLayers = try c.decodeIfPresent(Int.self, forKey: .numHiddenLayers) ?? d.numHiddenLayers
        numAttentionHeads = try c.decodeIfPresent(Int.self, forKey: .numAttentionHeads) ?? d.numAttentionHeads
        numKeyValueHeads = try c.decodeIfPresent(Int.self, forKey: .numKeyValueHeads) ?? d.numKeyValueHeads ?? numAttentionHeads
        headDim = try c.decodeIfPresent(Int.self, forKey: .headDim) ?? d.headDim
        hiddenAct = try c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? d.hiddenAct
        maxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? d.maxPositionEmbeddings
        rmsNormEps = try c.decodeIfPresent(Double.self, forKey: .rmsNormEps) ?? d.rmsNormEps
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? d.tieWordEmbeddings
        rope = try RopeSettings.decode(
            from: c, parameters: .ropeParameters, theta: .ropeTheta, partialFactor: .partialRotaryFactor,
            scaling: .ropeScaling, defaultTheta: d.ropeTheta, defaultPartialFactor: d.partialRotaryFactor,
            familyTypes: d.familyRopeTypes)
        attentionBias = try c.decodeIfPresent(Bool.self, forKey: .attentionBias) ?? d.attentionBias
        bosTokenID = try c.specialToken(.bosTokenID, default: d.bosTokenID)
        eosTokenID = try c.specialTokens(.eosTokenID, default: d.eosTokenID)
        dtype = try c.decodeIfPresent(String.self, forKey: .dtype) ?? c.decodeIfPresent(String.self, forKey: .torchDtype)
    }

    /// `head_dim`, or hidden_size / num_attention_heads where the config gives none.
    var headDimension: Int { headDim ?? hiddenSize / max(1, numAttentionHeads) }
}

extension DecoderCore {
    /// Grouped-query attention over the core's heads, `headDimension`, rotary width, θ and
    /// scaling; the family says which norms and biases it has.
    func groupedAttention(queryKeyNorm: Bool, queryKeyValueBias: Bool, outputBias: Bool,
                          slidingWindow: Int? = nil, interleavedRotary: Bool = false) throws -> AttentionShape {
        AttentionShape(
            heads: numAttentionHeads, keyValueHeads: numKeyValueHeads, headDimension: headDimension,
            rotaryDimension: rope.rotaryDimension(headDimension: headDimension), ropeTheta: rope.theta,
            queryKeyNorm: queryKeyNorm, queryKeyValueBias: queryKeyValueBias, outputBias: outputBias,
            slidingWindow: slidingWindow, ropeScaling: try rope.scaling(maxPositionEmbeddings: maxPositionEmbeddings),
            interleavedRotary: interleavedRotary)
    }

    /// A description with the fields the core decides (vocabulary, width, norm ε, tied
    /// embeddings, positions, special tokens, dtype) and the family's blocks.
    func description(
        architecture: Architecture, attention: AttentionShape, layers: [FeedForwardKind], router: RouterConfiguration,
        hasCorrectionBias: Bool, moeIntermediateSize: Int, sharedExpertIntermediateSize: Int?
    ) -> ModelDescription {
        ModelDescription(
            architecture: architecture,
            vocabularySize: vocabSize,
            hiddenSize: hiddenSize,
            attention: attention,
            rmsNormEpsilon: Float(rmsNormEps),
            tieWordEmbeddings: tieWordEmbeddings,
            layers: layers,
            router: router,
            hasCorrectionBias: hasCorrectionBias,
            moeIntermediateSize: moeIntermediateSize,
            sharedExpertIntermediateSize: sharedExpertIntermediateSize,
            maxPositionEmbeddings: maxPositionEmbeddings,
            eosTokenIDs: eosTokenID,
            bosTokenID: bosTokenID,
            declaredDType: dtype)
    }
}

/// DeepSeek-V3's routed-experts keys, read with the family's defaults. The expert count's
/// and the shared experts' key names differ between families, so each family names them.
struct RoutedExperts {
    var intermediateSize: Int
    var count: Int
    var perToken: Int
    var sharedExperts: Int
    var groups: Int
    var groupsPerToken: Int
    var normalizeTopK: Bool
    var routedScalingFactor: Double
    var firstDenseLayers: Int

    /// A configuration class's defaults. A nil count, per-token count or shared count is
    /// required (the class leaves it None and `DeepseekV3MoE` computes with it): an absent or
    /// null key is refused by its first name.
    struct Defaults {
        var intermediateSize: Int
        var count: Int?
        var perToken: Int?
        var sharedExperts: Int?
        var groups = 1
        var groupsPerToken = 1
        var normalizeTopK: Bool
        var routedScalingFactor = 1.0
        var firstDenseLayers: Int
        /// Where the expert count is read, first present wins.
        var countKeys = ["n_routed_experts"]
        var sharedExpertsKey = "n_shared_experts"
    }

    private struct Key: CodingKey {
        let stringValue: String
        init(_ name: String) { stringValue = name }
        init?(stringValue: String) { self.init(stringValue) }
        var intValue: Int? { nil }
        init?(intValue: Int) { nil }
    }

    init(from decoder: Decoder, defaults d: Defaults) throws {
        let c = try decoder.container(keyedBy: Key.self)
        func int(_ names: [String], _ fallback: Int?) throws -> Int {
            for name in names { if let v = try c.decodeIfPresent(Int.self, forKey: Key(name)) { return v } }
            guard let fallback else { throw ConfigurationError(field: names[0], reason: "is required") }
            return fallback
        }
        intermediateSize = try int(["moe_intermediate_size"], d.intermediateSize)
        count = try int(d.countKeys, d.count)
        sharedExperts = try int([d.sharedExpertsKey], d.sharedExperts)
        perToken = try int(["num_experts_per_tok"], d.perToken)
        groups = try int(["n_group"], d.groups)
        groupsPerToken = try int(["topk_group"], d.groupsPerToken)
        normalizeTopK = try c.decodeIfPresent(Bool.self, forKey: Key("norm_topk_prob")) ?? d.normalizeTopK
        routedScalingFactor = try c.decodeIfPresent(Double.self, forKey: Key("routed_scaling_factor")) ?? d.routedScalingFactor
        firstDenseLayers = try int(["first_k_dense_replace"], d.firstDenseLayers)
    }

    /// `DeepseekV3TopkRouter`: sigmoid scores, group-limited top-k, `norm_topk_prob` (+1e-20),
    /// `routed_scaling_factor`.
    var router: RouterConfiguration {
        RouterConfiguration(
            expertCount: count, expertsPerToken: perToken, scoring: .sigmoid,
            normalizeTopK: normalizeTopK, routedScalingFactor: Float(routedScalingFactor),
            groupCount: groups, groupsPerToken: groupsPerToken, normalizationEpsilon: 1e-20)
    }

    /// `DeepseekV3MoE.shared_experts`: one MLP of moe_intermediate_size × n_shared_experts.
    var sharedExpertIntermediateSize: Int? { sharedExperts > 0 ? intermediateSize * sharedExperts : nil }
}
