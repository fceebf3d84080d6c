// Kimi-K2.5 / K2.6, mirroring transformers' `models/kimi_k25/configuration_kimi_k25.py` and
// `modeling_kimi_k25.py` on the Hub layout of moonshotai/Kimi-K2.5:
// - The text model is Kimi-K2's DeepSeek-V3 (`text_config`, `model_type: kimi_k2`, read by
//   DeepseekV3.swift), under `language_model.model.` with `language_model.lm_head.weight`;
//   positions are plain token positions (no M-RoPE).
// - `vision_config` and `mm_projector` are MoonViT-3D (MoonViT.swift), run on the coordinator;
//   its features replace the embeddings of the image tokens (`<|media_pad|>`,
//   `image_token_id`), one per 2×2 block of patches.
// - `tie_word_embeddings` is the top-level key (default true, Kimi_K25Config's), which is what
//   transformers ties by; the text config's own key is not consulted.

import Foundation

/// `Kimi_K25Config`.
struct KimiK25Configuration: Decodable {
    var text: DeepseekV3Configuration
    var vision: MoonViTConfiguration
    var projectionHiddenSize: Int?
    var projectionLayerNormEps: Double
    var tokens: VisionTokenIDs
    var tieWordEmbeddings: Bool

    enum CodingKeys: String, CodingKey {
        case textConfig = "text_config"
        case visionConfig = "vision_config"
        case projectionHiddenSize = "projection_hidden_size"
        case projectionLayerNormEps = "projection_layer_norm_eps"
        case tieWordEmbeddings = "tie_word_embeddings"
    }

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        text = try c.decode(DeepseekV3Configuration.self, forKey: .textConfig)
        vision = try c.decodeIfPresent(MoonViTConfiguration.self, forKey: .visionConfig) ?? MoonViTConfiguration()
        // Defaults are Kimi_K25Config's.
        projectionHiddenSize = c.contains(.projectionHiddenSize) ? try c.decodeIfPresent(Int.self, forKey: .projectionHiddenSize) : 1152
        projectionLayerNormEps = try c.decodeIfPresent(Double.self, forKey: .projectionLayerNormEps) ?? 1e-5
        tokens = try VisionTokenIDs(from: decoder, defaults: VisionTokenIDs(image: 163_605, video: 163_840, start: 163_602, end: 163_604),
                                    mediaPlaceholder: true)
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? true
    }

    func description() throws -> ModelDescription {
        var text = text
        text.core.tieWordEmbeddings = tieWordEmbeddings
        var description = try text.description()
        description.architecture = .kimiK25
        description.textPrefix = "language_model.model."
        description.lmHeadName = "language_model.lm_head.weight"
        let v = vision
        guard v.posEmbHeight == v.posEmbWidth else {
            // Kimi_K25VisionPositionEmbeddings resamples a square table (num_grid_per_side = pos_emb_height).
            throw ConfigurationError(field: "vision_config.pos_emb_width",
                                     reason: "\(v.posEmbWidth) differs from pos_emb_height \(v.posEmbHeight); the position table must be square")
        }
        guard v.mergeKernelSize.count == 2, v.mergeKernelSize[0] == v.mergeKernelSize[1], v.mergeKernelSize[0] > 0 else {
            throw ConfigurationError(field: "vision_config.merge_kernel_size", reason: "\(v.mergeKernelSize) is not a square kernel")
        }
        guard v.hiddenSize % v.numAttentionHeads == 0, (v.hiddenSize / v.numAttentionHeads) % 4 == 0 else {
            throw ConfigurationError(field: "vision_config.num_attention_heads",
                                     reason: "the head width of hidden_size \(v.hiddenSize) / \(v.numAttentionHeads) heads must be a multiple of 4 (2-D rotary)")
        }
        guard v.ropeType == "axial" else {
            throw ConfigurationError(field: "vision_config.rope_parameters.rope_type", reason: "'\(v.ropeType)' is not supported (MoonViT uses axial)")
        }
        guard ["gelu_pytorch_tanh", "gelu"].contains(v.hiddenAct) else {
            throw ConfigurationError(field: "vision_config.hidden_act", reason: "'\(v.hiddenAct)' is not supported (gelu_pytorch_tanh or gelu)")
        }
        guard projectionHiddenSize == nil || projectionHiddenSize == v.hiddenSize else {
            throw ConfigurationError(field: "projection_hidden_size",
                                     reason: "\(projectionHiddenSize!) differs from vision_config.hidden_size \(v.hiddenSize) (the projector's pre-norm runs per patch)")
        }
        var shape = VisionTowerShape(
            depth: v.numHiddenLayers, hiddenSize: v.hiddenSize, intermediateSize: v.intermediateSize, heads: v.numAttentionHeads,
            inChannels: 3, patchSize: v.patchSize, temporalPatchSize: 1, spatialMergeSize: v.mergeKernelSize[0],
            outHiddenSize: description.hiddenSize, positionEmbeddings: v.posEmbHeight * v.posEmbWidth, deepstackIndexes: [],
            ropeTheta: v.ropeTheta, activation: v.hiddenAct, imageTokenID: tokens.image, videoTokenID: tokens.video,
            visionStartTokenID: tokens.start, visionEndTokenID: tokens.end)
        shape.kind = .moonViT
        shape.normEpsilon = 1e-5
        shape.projectorNormEpsilon = Float(projectionLayerNormEps)
        shape.temporalPositions = v.posEmbTime
        description.vision = shape
        return description
    }
}

/// `Kimi_K25VisionConfig` (the Hub's remote-code names `init_pos_emb_*` are read too).
struct MoonViTConfiguration: Decodable {
    var patchSize = 14
    var posEmbHeight = 64
    var posEmbWidth = 64
    var posEmbTime = 4
    var numAttentionHeads = 16
    var numHiddenLayers = 27
    var hiddenSize = 1152
    var intermediateSize = 4304
    var hiddenAct = "gelu_pytorch_tanh"
    var mergeKernelSize = [2, 2]
    var ropeType = "axial"
    var ropeTheta = 10_000.0

    enum CodingKeys: String, CodingKey {
        case patchSize = "patch_size"
        case posEmbHeight = "pos_emb_height", posEmbWidth = "pos_emb_width", posEmbTime = "pos_emb_time"
        case initPosEmbHeight = "init_pos_emb_height", initPosEmbWidth = "init_pos_emb_width", initPosEmbTime = "init_pos_emb_time"
        case numAttentionHeads = "num_attention_heads"
        case numHiddenLayers = "num_hidden_layers"
        case hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size"
        case hiddenAct = "hidden_act"
        case mergeKernelSize = "merge_kernel_size"
        case ropeParameters = "rope_parameters"
    }

    private struct Rope: Decodable {
        let ropeType: String?
        let ropeTheta: Double?
        enum CodingKeys: String, CodingKey { case ropeType = "rope_type", ropeTheta = "rope_theta" }
    }

    init() {}

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        patchSize = try c.decodeIfPresent(Int.self, forKey: .patchSize) ?? patchSize
        posEmbHeight = try c.decodeIfPresent(Int.self, forKey: .posEmbHeight) ?? c.decodeIfPresent(Int.self, forKey: .initPosEmbHeight) ?? posEmbHeight
        posEmbWidth = try c.decodeIfPresent(Int.self, forKey: .posEmbWidth) ?? c.decodeIfPresent(Int.self, forKey: .initPosEmbWidth) ?? posEmbWidth
        posEmbTime = try c.decodeIfPresent(Int.self, forKey: .posEmbTime) ?? c.decodeIfPresent(Int.self, forKey: .initPosEmbTime) ?? posEmbTime
        numAttentionHeads = try c.decodeIfPresent(Int.self, forKey: .numAttentionHeads) ?? numAttentionHeads
        numHiddenLayers = try c.decodeIfPresent(Int.self, forKey: .numHiddenLayers) ?? numHiddenLayers
        hiddenSize = try c.decodeIfPresent(Int.self, forKey: .hiddenSize) ?? hiddenSize
        intermediateSize = try c.decodeIfPresent(Int.self, forKey: .intermediateSize) ?? intermediateSize
        hiddenAct = try c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? hiddenAct
        mergeKernelSize = try c.decodeIfPresent([Int].self, forKey: .mergeKernelSize) ?? mergeKernelSize
        if let rope = try c.decodeIfPresent(Rope.self, forKey: .ropeParameters) {
            ropeType = rope.ropeType ?? ropeType
            ropeTheta = rope.ropeTheta ?? ropeTheta
        }
    }
}

enum KimiK25Family: ArchitectureDefinition {
    static let architecture = Architecture.kimiK25
    static let modelTypes = ["kimi_k25"]
    /// transformers' own class name, which its save_pretrained writes.
    static let architectureAliases = ["Kimi_K25ForConditionalGeneration"]
    static func describe(configJSON: Data) throws -> ModelDescription { try decode(KimiK25Configuration.self, configJSON) }
}

extension KimiK25Configuration: DescribedConfiguration {}
