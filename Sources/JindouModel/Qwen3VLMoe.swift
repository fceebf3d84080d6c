// Qwen3-VL-MoE, mirroring transformers' `models/qwen3_vl_moe/configuration_qwen3_vl_moe.py`
// and `modeling_qwen3_vl_moe.py`:
// - The text model is Qwen3-MoE's decoder (`Qwen3VLMoeTextDecoderLayer` = Qwen3MoeDecoderLayer)
//   with three differences: interleaved M-RoPE (`mrope_section`: frequency i turns with the
//   token's temporal, height or width position, see `ModelDescription.mropeAxes`), DeepStack
//   (merged features of some vision blocks added to the hidden states of image tokens after
//   the first text layers), and a router that always renormalises its top-k
//   (`Qwen3VLMoeTextTopKRouter` has no norm_topk_prob switch).
// - Routed experts are stored fused per layer, input-major (`ExpertStorage.fused`).
// - Tensors live under `model.language_model.` (text) and `model.visual.` (vision tower,
//   VisionTower.swift); `lm_head.weight` at the top.
// - Position ids for prompts with images follow `Qwen3VLMoeModel.get_rope_index`
//   (MultimodalPrompt.swift).

import Foundation
import JindouRouting

/// `Qwen3VLMoeConfig`: `text_config` (read as a Qwen3-MoE text config), `vision_config`,
/// special token ids.
struct Qwen3VLMoeConfiguration: Decodable {
    var text: Qwen3MoeConfiguration
    var vision: VisionConfiguration
    var tokens: VisionTokenIDs
    var tieWordEmbeddings: Bool?

    enum CodingKeys: String, CodingKey {
        case textConfig = "text_config"
        case visionConfig = "vision_config"
        case tieWordEmbeddings = "tie_word_embeddings"
    }

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        text = try c.decode(Qwen3MoeConfiguration.self, forKey: .textConfig)
        vision = try c.decodeIfPresent(VisionConfiguration.self, forKey: .visionConfig) ?? VisionConfiguration()
        // Defaults are Qwen3VLMoeConfig's.
        tokens = try VisionTokenIDs(from: decoder, defaults: VisionTokenIDs(image: 151_655, video: 151_656, start: 151_652, end: 151_653))
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings)
    }

    func description() throws -> ModelDescription {
        var text = text
        text.normTopkProb = true  // Qwen3VLMoeTextTopKRouter always renormalises
        if let tie = tieWordEmbeddings { text.core.tieWordEmbeddings = tie }
        guard let section = text.core.rope.mropeSection else {
            throw ConfigurationError(field: "text_config.rope_parameters.mrope_section", reason: "is required for Qwen3-VL")
        }
        var description = try text.description()
        description.architecture = .qwen3VLMoe
        description.attention.mropeSection = section
        description.textPrefix = "model.language_model."
        description.expertStorage = .fused
        description.vision = vision.shape(tokens: tokens)
        return description
    }
}

/// The special tokens around images (`image_token_id`, `video_token_id`,
/// `vision_start_token_id`, `vision_end_token_id`; Kimi's Hub configs name the image token
/// `media_placeholder_token_id`), with the family's defaults for absent keys.
struct VisionTokenIDs {
    var image: Int
    var video: Int
    var start: Int
    var end: Int

    enum CodingKeys: String, CodingKey {
        case image = "image_token_id", video = "video_token_id", start = "vision_start_token_id", end = "vision_end_token_id"
        case mediaPlaceholder = "media_placeholder_token_id"
    }

    init(image: Int, video: Int, start: Int, end: Int) {
        (self.image, self.video, self.start, self.end) = (image, video, start, end)
    }

    /// `mediaPlaceholder`: read `media_placeholder_token_id` when `image_token_id` is absent (Kimi).
    init(from decoder: Decoder, defaults: VisionTokenIDs, mediaPlaceholder: Bool = false) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        image = try c.decodeIfPresent(Int.self, forKey: .image)
            ?? (mediaPlaceholder ? c.decodeIfPresent(Int.self, forKey: .mediaPlaceholder) : nil) ?? defaults.image
        video = try c.decodeIfPresent(Int.self, forKey: .video) ?? defaults.video
        start = try c.decodeIfPresent(Int.self, forKey: .start) ?? defaults.start
        end = try c.decodeIfPresent(Int.self, forKey: .end) ?? defaults.end
    }
}

/// `Qwen3VLMoeVisionConfig`.
struct VisionConfiguration: Decodable {
    var depth = 27
    var hiddenSize = 1152
    var hiddenAct = "gelu_pytorch_tanh"
    var intermediateSize = 4304
    var numHeads = 16
    var inChannels = 3
    var patchSize = 16
    var spatialMergeSize = 2
    var temporalPatchSize = 2
    var outHiddenSize = 3584
    var numPositionEmbeddings = 2304
    var deepstackVisualIndexes = [8, 16, 24]
    var ropeTheta = 10_000.0

    enum CodingKeys: String, CodingKey {
        case depth
        case hiddenSize = "hidden_size"
        case hiddenAct = "hidden_act"
        case intermediateSize = "intermediate_size"
        case numHeads = "num_heads"
        case inChannels = "in_channels"
        case patchSize = "patch_size"
        case spatialMergeSize = "spatial_merge_size"
        case temporalPatchSize = "temporal_patch_size"
        case outHiddenSize = "out_hidden_size"
        case numPositionEmbeddings = "num_position_embeddings"
        case deepstackVisualIndexes = "deepstack_visual_indexes"
        case ropeParameters = "rope_parameters"
    }

    /// The tower's shape (Qwen3-VL's, or Qwen3.5's with `deepstackVisualIndexes` emptied).
    func shape(tokens: VisionTokenIDs) -> VisionTowerShape {
        VisionTowerShape(
            depth: depth, hiddenSize: hiddenSize, intermediateSize: intermediateSize, heads: numHeads, inChannels: inChannels,
            patchSize: patchSize, temporalPatchSize: temporalPatchSize, spatialMergeSize: spatialMergeSize,
            outHiddenSize: outHiddenSize, positionEmbeddings: numPositionEmbeddings, deepstackIndexes: deepstackVisualIndexes,
            ropeTheta: ropeTheta, activation: hiddenAct, imageTokenID: tokens.image, videoTokenID: tokens.video,
            visionStartTokenID: tokens.start, visionEndTokenID: tokens.end)
    }

    private struct RopeTheta: Decodable {
        let ropeTheta: Double?
        enum CodingKeys: String, CodingKey { case ropeTheta = "rope_theta" }
    }

    init() {}

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        depth = try c.decodeIfPresent(Int.self, forKey: .depth) ?? depth
        hiddenSize = try c.decodeIfPresent(Int.self, forKey: .hiddenSize) ?? hiddenSize
        hiddenAct = try c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? hiddenAct
        intermediateSize = try c.decodeIfPresent(Int.self, forKey: .intermediateSize) ?? intermediateSize
        numHeads = try c.decodeIfPresent(Int.self, forKey: .numHeads) ?? numHeads
        inChannels = try c.decodeIfPresent(Int.self, forKey: .inChannels) ?? inChannels
        patchSize = try c.decodeIfPresent(Int.self, forKey: .patchSize) ?? patchSize
        spatialMergeSize = try c.decodeIfPresent(Int.self, forKey: .spatialMergeSize) ?? spatialMergeSize
        temporalPatchSize = try c.decodeIfPresent(Int.self, forKey: .temporalPatchSize) ?? temporalPatchSize
        outHiddenSize = try c.decodeIfPresent(Int.self, forKey: .outHiddenSize) ?? outHiddenSize
        numPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .numPositionEmbeddings) ?? numPositionEmbeddings
        deepstackVisualIndexes = try c.decodeIfPresent([Int].self, forKey: .deepstackVisualIndexes) ?? deepstackVisualIndexes
        ropeTheta = try c.decodeIfPresent(RopeTheta.self, forKey: .ropeParameters)?.ropeTheta ?? ropeTheta
    }
}
