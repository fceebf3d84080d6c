import Foundation
import Testing
import JindouModel
import JindouTestSupport
import JindouRouting

/// K-EXAONE's config.json: layer types from `sliding_window_pattern` as Exaone4Config
/// derives them, rotary on sliding layers only (NoPE globals), dense/sparse layers, and
/// what it cannot mean refused by name. Numerical equality with transformers: the
/// exaone-moe-tiny goldens, ClusterEqualsEngineTests, LocalClusterTests.
@Suite("K-EXAONE configuration")
struct ExaoneMoeTests {
    func config() throws -> [String: Any] { try ConfigEditing.config("exaone-moe-tiny") }

    func describe(_ config: [String: Any]) throws -> ModelDescription { try ConfigEditing.describe(config) }

    func refusedField(_ config: [String: Any]) -> String? { ConfigEditing.refusedField(config) }

    @Test func slidingLayersRotateAndGlobalLayersDoNot() throws {
        let d = try describe(try config())
        #expect(d.architecture == .exaoneMoe && d.sparseLayers == [1, 2, 3])
        // sliding_window_pattern 2: layers 0 and 2 slide (window 5), 1 and 3 are global NoPE.
        #expect(d.attention.layerWindows == [5, nil, 5, nil])
        #expect(d.attention.layerRotary == [true, false, true, false])
        #expect(d.correctionBiasName(layer: 1) == "model.layers.1.mlp.e_score_correction_bias")
        var c = try config()
        c.removeValue(forKey: "layer_types")
        c["sliding_window"] = NSNull()  // no window: every layer global, and every layer rotates
        let global = try describe(c).attention
        #expect(global.layerWindows == nil && global.rotates(layer: 1))
    }

    /// (field, JSON value)
    @Test(arguments: [("sliding_window_pattern", "\"LLLG\""), ("layer_types", "[\"full_attention\"]"),
                      ("mlp_layer_types", "[\"dense\", \"moe\", \"sparse\", \"sparse\"]"), ("hidden_act", "\"gelu\"")])
    func whatItCannotMeanIsRefusedByName(field: String, value: String) throws {
        var c = try config()
        if field == "sliding_window_pattern" { c.removeValue(forKey: "layer_types") }
        c[field] = try JSONSerialization.jsonObject(with: Data(value.utf8), options: .fragmentsAllowed)
        #expect(refusedField(c) == field)
    }
}
