import Foundation
import Testing
import JindouModel
import JindouTestSupport
import JindouRouting

/// MiniMax-M2's config.json as the Hub writes it (rotary_dim, the keys transformers
/// ignores) and as transformers 5 writes it describe the same model; options the family's
/// modeling file does not compute are refused by name. Numerical equality with
/// transformers is in TransformersGoldenTests/RouterGoldenTests (the minimax-m2-tiny
/// goldens) and through workers in ClusterEqualsEngineTests and LocalClusterTests.
@Suite("MiniMax-M2 configuration")
struct MiniMaxM2Tests {
    let fixture = "minimax-m2-tiny"

    func config() throws -> [String: Any] { try ConfigEditing.config(fixture) }

    func describe(_ config: [String: Any]) throws -> ModelDescription { try ConfigEditing.describe(config) }

    @Test func theHubConfigDescribesWholeProjectionNormsPartialRotaryAndSigmoidRouting() throws {
        let hub = try config()
        #expect(hub["rotary_dim"] as? Int == 8 && hub["partial_rotary_factor"] == nil, "fixture should be in the Hub style")
        let d = try describe(hub)
        #expect(d.architecture == .miniMaxM2)
        #expect(d.sparseLayers == Array(0..<d.layerCount))
        #expect(d.attention.queryKeyNorm && d.attention.queryKeyNormScope == .wholeProjection)
        #expect(d.attention.rotaryDimension == 8 && d.attention.headDimension == 16)
        #expect(d.router.scoring == .sigmoid && d.router.normalizeTopK && d.hasCorrectionBias)
        #expect(d.router.routedScalingFactor == 1 && d.router.groupCount == 1)
        #expect(d.sharedExpertIntermediateSize == nil && d.moeIntermediateSize == 32)
        #expect(d.routerName(layer: 2) == "model.layers.2.block_sparse_moe.gate.weight")
        #expect(d.correctionBiasName(layer: 0) == "model.layers.0.block_sparse_moe.e_score_correction_bias")
        #expect(d.expertTensorKey(ExpertKey(layer: 1, expert: 3), projection: "up") == "model.layers.1.block_sparse_moe.experts.3.w3.weight")
    }

    @Test func theTransformers5StyleDescribesTheSameModel() throws {
        var current = try config()
        let theta = current.removeValue(forKey: "rope_theta")!
        current.removeValue(forKey: "rotary_dim")
        current.removeValue(forKey: "rope_scaling")
        current["rope_parameters"] = ["rope_type": "default", "rope_theta": theta, "partial_rotary_factor": 0.5]
        for key in ["use_qk_norm", "qk_norm_type", "scoring_func", "use_routing_bias", "shared_intermediate_size"] {
            current.removeValue(forKey: key)
        }
        #expect(try describe(current) == describe(try config()))
        // MiniMaxM2Config.convert_rope_params_to_dict: rope_parameters' factor wins over rotary_dim.
        current["rotary_dim"] = 4
        #expect(try describe(current).attention.rotaryDimension == 8)
    }

    /// (field, JSON value)
    @Test(arguments: [("scoring_func", "\"softmax\""), ("qk_norm_type", "\"per_head\""), ("use_qk_norm", "false"),
                      ("use_routing_bias", "false"), ("shared_intermediate_size", "64"), ("hidden_act", "\"gelu\"")])
    func computationsTheFamilyDoesNotHaveAreRefusedByName(field: String, value: String) throws {
        var changed = try config()
        changed[field] = try JSONSerialization.jsonObject(with: Data(value.utf8), options: .fragmentsAllowed)
        #expect(ConfigEditing.refusedField(changed) == field, "\(field) = \(value)")
    }
}
