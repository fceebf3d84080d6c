import Foundation
import JindouModel
import JindouPlacement
import JindouTestSupport
import Testing

@Suite("Placement is validated data")
struct PlacementTests {
    var description: ModelDescription {
        get throws { try ModelDescription(checkpoint: Checkpoint(directory: Fixtures.path("qwen3-moe-tiny"))) }
    }

    @Test func strategiesCoverEveryExpertOnce() throws {
        let d = try description
        for build in [Placement.contiguous, Placement.roundRobin] {
            let placement = try build(["a", "b", "c"], d, 1)
            try placement.validate(for: d)
            let counts = (0..<3).map { placement.experts(ofWorker: $0).count }
            #expect(counts.reduce(0, +) == d.allExperts.count)
            #expect(counts.max()! - counts.min()! <= d.sparseLayers.count)
        }
        // A worker's --experts spec computes the same split as the coordinator.
        let placement = try Placement.roundRobin(workers: ["a", "b", "c"], description: d)
        #expect(try expertsForSpec("round-robin:1/3", description: d) == placement.experts(ofWorker: 1))
    }

    @Test func exampleFileParsesWithReplicas() throws {
        let d = try description
        let placement = try PlacementFile.load(path: Fixtures.repositoryRoot + "/cluster/placement-example.json", description: d)
        #expect(placement.workers == ["box-a", "box-b", "box-c"])
        #expect(placement.hostsOf(ExpertKey(layer: 3, expert: 0)) == [0, 1])
        #expect(placement.hostsOf(ExpertKey(layer: 0, expert: 0)) == [0])
        #expect(placement.hostsOf(ExpertKey(layer: 2, expert: 6)) == [2])
    }

    @Test func missingExpertIsNamed() throws {
        let d = try description
        let file = PlacementFile(version: 1, workers: ["a", "b"], shards: [
            .init(worker: "a", experts: "0-5"), .init(worker: "b", experts: "7"),
        ])
        #expect(throws: PlacementError.unhosted(layer: 0, expert: 6)) { try file.placement(description: d) }
        let unknown = PlacementFile(version: 1, workers: ["a"], shards: [.init(worker: "z", experts: "0-7")])
        #expect(throws: PlacementError.unknownWorker("z")) { try unknown.placement(description: d) }
        let dense = PlacementFile(version: 1, workers: ["a"], shards: [.init(worker: "a", experts: "0-7", layers: "1")])
        #expect(throws: PlacementError.layerNotSparse(layer: 1)) { try dense.placement(description: d) }
        #expect(throws: PlacementError.expertOutOfRange(expert: 8, expertCount: 8)) { try expertsForSpec("0-8", description: d) }
        #expect(throws: PlacementError.self) { try expertsForSpec("contiguous:3/3", description: d) }
        #expect(throws: PlacementError.duplicateWorker("a")) { try Placement(version: 1, workers: ["a", "a"], hosts: [:]) }
    }
}
