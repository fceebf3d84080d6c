import Foundation
import Testing
import JindouModel
import JindouTestSupport
import JindouRouting

/// The router reproduces transformers' routers (`Qwen3MoeTopKRouter`,
/// `Glm4MoeTopkRouter`) on the hidden states each gate saw during a prefill: same
/// experts, same weights; and Jindou's `auto` rule on the generator's reference of it.
/// Routers run in fp32 here (as GLM4's does in transformers); the fp32 golden sets are
/// the reference, including the f32-upcast set of the bf16 fixture.
@Suite("Router equals transformers' routers")
struct RouterGoldenTests {
    @Test(arguments: Fixtures.goldenSets.filter { $0.dtype == "float32" })
    func routerChoicesAndWeights(set: GoldenSet) async throws {
        let (golden, tensors) = try set.load()
        let engine = try await EngineCache.shared.engine(set.fixture)
        #expect(!golden.router.isEmpty)
        for r in golden.router {
            guard case .sparse(let router, _) = engine.model.layers[r.layer].feedForward else {
                Issue.record("layer \(r.layer) is not sparse")
                continue
            }
            let hidden = try tensors.tensor("router\(r.index).hidden").floats()
            let indices = try tensors.tensor("router\(r.index).indices").int64s()
            let weights = try tensors.tensor("router\(r.index).weights").floats()
            let width = indices.count / r.tokens
            let decision = hidden.withUnsafeBufferPointer {
                router.route(hidden: $0.baseAddress!, tokens: r.tokens) { _ in r.experts }
            }
            for t in 0..<r.tokens {
                let expectedPairs = (0..<width).compactMap { i -> (Int, Float)? in
                    let e = indices[t * width + i]
                    return e < 0 ? nil : (Int(e), weights[t * width + i])
                }
                let actual = decision.choices(ofToken: t)
                #expect(actual.map(\.expert) == expectedPairs.map(\.0), "\(set) router case \(r.index) layer \(r.layer) token \(t)")
                if actual.count == expectedPairs.count {
                    for (a, e) in zip(actual, expectedPairs) {
                        #expect(abs(a.weight - e.1) <= 1e-5, "\(set) router case \(r.index) token \(t) expert \(e.0)")
                    }
                }
            }
        }
    }
}
