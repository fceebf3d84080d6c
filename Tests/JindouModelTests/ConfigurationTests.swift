import Foundation
import Testing
import JindouModel
import JindouTestSupport
import JindouRouting

/// config.json comes in two styles (transformers 4.x on the Hub, 5.x from the fixture
/// generator); both must describe the same model.
@Suite("Both config.json styles describe the same model")
struct ConfigurationTests {
    /// Rewrites a transformers-5 config in the 4.x style, as Hub checkpoints have it.
    func legacyStyle(_ config: [String: Any]) -> [String: Any] {
        var legacy = config
        let rope = legacy.removeValue(forKey: "rope_parameters") as? [String: Any] ?? [:]
        legacy["rope_theta"] = rope["rope_theta"]
        if let factor = rope["partial_rotary_factor"] { legacy["partial_rotary_factor"] = factor }
        legacy["rope_scaling"] = NSNull()
        if let experts = legacy.removeValue(forKey: "num_local_experts") {
            legacy[legacy["model_type"] as? String == "qwen3_moe" ? "num_experts" : "n_routed_experts"] = experts
        }
        if let dtype = legacy.removeValue(forKey: "dtype") { legacy["torch_dtype"] = dtype }
        return legacy
    }

    @Test(arguments: ["qwen3-moe-tiny", "glm4-moe-tiny"])
    func legacyAndCurrentStylesAgree(fixture: String) throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path(fixture) + "/config.json"))
        let config = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        #expect(config["rope_parameters"] != nil, "fixture should be in the transformers 5 style")
        let current = try ModelDescription(configJSON: data, path: "current")
        let legacy = try ModelDescription(
            configJSON: try JSONSerialization.data(withJSONObject: legacyStyle(config)), path: "legacy")
        #expect(current == legacy)
    }

    @Test func qwen3LayerKindsFollowSparseStepAndMlpOnlyLayers() throws {
        let description = try ModelDescription(checkpoint: Checkpoint(directory: Fixtures.path("qwen3-moe-tiny")))
        // mlp_only_layers [1], decoder_sparse_step 1.
        #expect(description.sparseLayers == [0, 2, 3])
        #expect(description.router.scoring == .softmax)
        #expect(description.attention.queryKeyNorm)
    }

    @Test func glm4ReadsGroupsBiasAndPartialRotary() throws {
        let description = try ModelDescription(checkpoint: Checkpoint(directory: Fixtures.path("glm4-moe-tiny")))
        #expect(description.sparseLayers == [1, 2])  // first_k_dense_replace 1
        #expect(description.router.groupCount == 2 && description.router.groupsPerToken == 1)
        #expect(description.router.scoring == .sigmoid && description.hasCorrectionBias)
        #expect(description.router.routedScalingFactor == 2.5)
        #expect(description.attention.rotaryDimension == description.attention.headDimension / 2)
        #expect(description.sharedExpertIntermediateSize == description.moeIntermediateSize)
    }

    @Test func legacyGlmWithMtpDeclaredLoadsWithoutMtpWeights() throws {
        // glm4-moe-tiny-legacy declares num_nextn_predict_layers; the MTP layer is ignored.
        let checkpoint = try Checkpoint(directory: Fixtures.path("glm4-moe-tiny-legacy"))
        let description = try ModelDescription(checkpoint: checkpoint)
        #expect(description.layerCount == 2)
        #expect(description.attention.queryKeyValueBias && !description.attention.outputBias)
    }

    @Test func unsupportedRopeTypeIsRefusedByName() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("qwen3-moe-tiny") + "/config.json"))
        var config = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        config["rope_parameters"] = ["rope_type": "longrope", "rope_theta": 10000.0, "factor": 4.0]
        #expect(throws: CheckpointError.badConfig(path: "c", field: "rope_parameters.rope_type",
                                                  reason: "rope type 'longrope' is not supported yet (supported: default, yarn)")) {
            try ModelDescription(configJSON: try JSONSerialization.data(withJSONObject: config), path: "c")
        }
    }

    @Test func eosIdsComeFromConfigAndGenerationConfig() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("qwen3-moe-tiny") + "/config.json"))
        var config = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        config["eos_token_id"] = 7
        let generation = Data(#"{"eos_token_id": [7, 9], "bos_token_id": 1}"#.utf8)
        let description = try ModelDescription(
            configJSON: try JSONSerialization.data(withJSONObject: config), path: "c", generationConfigJSON: generation)
        #expect(description.eosTokenIDs == [7, 9])
        #expect(description.bosTokenID == 1)
    }
}
