import CIBVerbs
import Foundation
import JindouCoordinator
import JindouModel
import JindouTestSupport
import JindouTransport
import JindouWire
import NIOCore
import Testing

/// The RDMA transport's pure parts (buffer layout, credits, connection parameters, error
/// texts, device choice), its refusal without a device, and the worker's answer to
/// RDMA_CONNECT when it has none. These machines' kernels have no RDMA modules; the
/// end-to-end test over SoftRoCE is in `SoftRoCETests` below.
@Suite("RDMA transport: pure parts and refusals")
struct RDMATransportTests {
    @Test func bufferLayoutSlotsAreAlignedDisjointAndChunksCoverTheStream() throws {
        for (slotBytes, send, receive) in [(4096, 4, 4), (1 << 20, 8, 16), (65536, 32, 1024), (16 << 20, 4, 4)] {
            let layout = try RDMABufferLayout(slotBytes: slotBytes, sendSlots: send, receiveSlots: receive)
            let ranges = (0..<send).map { layout.sendOffset($0)..<(layout.sendOffset($0) + slotBytes) }
                + (0..<receive).map { layout.receiveOffset($0)..<(layout.receiveOffset($0) + slotBytes) }
            #expect(ranges.allSatisfy { $0.lowerBound % RDMABufferLayout.slotAlignment == 0 && $0.upperBound <= layout.totalBytes })
            let sorted = ranges.sorted { $0.lowerBound < $1.lowerBound }
            #expect(zip(sorted, sorted.dropFirst()).allSatisfy { $0.upperBound <= $1.lowerBound })
            #expect(sorted.last?.upperBound == layout.totalBytes)
            // Receive ids name their slot and never collide with send or credit ids.
            #expect((0..<receive).map { layout.receiveID($0) & 0xFFFF_FFFF } == (0..<receive).map(UInt64.init))
            #expect((0..<receive).allSatisfy { layout.receiveID($0) >= RDMABufferLayout.receiveTag && layout.receiveID($0) < RDMABufferLayout.creditTag })
            for count in [0, 1, slotBytes - 1, slotBytes, slotBytes + 1, 3 * slotBytes + 17] {
                let chunks = layout.chunks(of: count)
                #expect(chunks.allSatisfy { !$0.isEmpty && $0.count <= slotBytes })
                #expect(chunks.first?.lowerBound ?? 0 == 0 && chunks.last?.upperBound ?? 0 == count)
                #expect(zip(chunks, chunks.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound })
            }
        }
        for (slotBytes, send, receive, word) in [(4000, 8, 8, "multiple of 64"), (1024, 8, 8, "multiple of 64"), (32 << 20, 8, 8, "multiple of 64"),
                                                 (4096, 3, 8, "send and"), (4096, 8, 2000, "receive slots"), (16 << 20, 64, 64, "exceed")] {
            #expect {
                _ = try RDMABufferLayout(slotBytes: slotBytes, sendSlots: send, receiveSlots: receive)
            } throws: { "\($0)".contains(word) }
        }
    }

    /// Two sides exchanging random streams under random delivery and repost timing: no SEND
    /// ever finds its peer without a posted receive, and every byte is delivered (no
    /// deadlock), for slot counts from the minimum up.
    @Test func creditsNeverOverrunTheReceiverAndNeverDeadlock() throws {
        struct Side {
            var window: RDMACreditWindow
            var posted: Int         // receives really posted here
            var consumed = 0        // used, not yet reposted
            var pending: Int        // data SENDs still to make
            var received = 0
        }
        var random = SplitMix64(seed: 24)
        for run in 0..<300 {
            let slots = [4 + Int(random.next() % 13), 4 + Int(random.next() % 13)]
            var sides = (0..<2).map { i in
                Side(window: RDMACreditWindow(peerReceiveSlots: slots[1 - i], ownReceiveSlots: slots[i]), posted: slots[i],
                     pending: Int(random.next() % 200))
            }
            let totals = sides.map(\.pending)
            var wires: [[UInt32]] = [[], []]  // in flight towards side i: immediate values (FIFO, as RC delivers)
            var steps = 0
            while steps < 100_000 {
                steps += 1
                var actions: [() throws -> Void] = []
                for i in 0..<2 {
                    let peer = 1 - i
                    if sides[i].pending > 0 && sides[i].window.canSendData {
                        actions.append {
                            #expect(sides[peer].posted - wires[peer].count > 0, "run \(run): data SEND without a posted receive")
                            wires[peer].append(sides[i].window.takeForData())
                            sides[i].pending -= 1
                        }
                    }
                    var probe = sides[i].window
                    if probe.creditUpdateDue() != nil {
                        actions.append {
                            #expect(sides[peer].posted - wires[peer].count > 0, "run \(run): credit SEND without a posted receive")
                            wires[peer].append(sides[i].window.creditUpdateDue()!)
                        }
                    }
                    if !wires[i].isEmpty {
                        actions.append {
                            let immediate = wires[i].removeFirst()
                            sides[i].posted -= 1
                            sides[i].consumed += 1
                            sides[i].received += 1
                            try sides[i].window.returned(immediate)
                        }
                    }
                    if sides[i].consumed > 0 {
                        actions.append {
                            sides[i].consumed -= 1
                            sides[i].posted += 1
                            sides[i].window.reposted()
                        }
                    }
                }
                if actions.isEmpty { break }
                try actions[Int(random.next() % UInt64(actions.count))]()
            }
            #expect(sides.allSatisfy { $0.pending == 0 }, "run \(run): stalled with \(sides.map(\.pending)) SENDs left (slots \(slots))")
            // Every data SEND arrived (credit-only SENDs come on top).
            #expect(sides[0].received >= totals[1] && sides[1].received >= totals[0], "run \(run)")
        }
        // A peer returning more than it was given is refused.
        var window = RDMACreditWindow(peerReceiveSlots: 4, ownReceiveSlots: 4)
        #expect(throws: RDMAError.self) { try window.returned(1) }
        _ = window.takeForData()
        #expect(throws: Never.self) { try window.returned(1) }
    }

    func parameters() -> RDMAConnectionParameters {
        RDMAConnectionParameters(gid: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 10, 78, 0, 1], queuePair: 0x1234, packetSequence: 0xABCDE,
                                 lid: 0, mtu: 3, slotBytes: 1 << 20, receiveSlots: 16)
    }

    /// RDMA_CONNECT / RDMA_ACCEPT survive the real encoder and decoder, and every field a
    /// peer could get wrong is refused before it reaches a verbs call.
    @Test func connectionParametersRoundTripAndAreValidated() throws {
        let sent = parameters()
        var bytes = try FrameEncoder.encode(sent.frame(.rdmaConnect, requestID: 9))
        var decoder = FrameDecoder(maximumPayloadLength: 1 << 20)
        let frame = try #require(try decoder.decode(&bytes))
        #expect(frame.requestID == 9)
        #expect(try RDMAConnectionParameters(frame: frame, kind: .rdmaConnect) == sent)
        #expect(throws: RDMAError.self) { try RDMAConnectionParameters(frame: frame, kind: .rdmaAccept) }
        #expect(throws: RDMAError.self) { try RDMAConnectionParameters(frame: Heartbeat.frame(.ping, requestID: 1), kind: .rdmaConnect) }

        let broken: [(String, (inout RDMAConnectionParameters) -> Void)] = [
            ("GID of 15 bytes", { $0.gid = Array($0.gid.prefix(15)) }),
            ("queue pair number 0", { $0.queuePair = 0 }),
            ("queue pair number 16777216", { $0.queuePair = 1 << 24 }),
            ("exceeds 24 bits", { $0.packetSequence = 1 << 24 }),
            ("MTU code 0", { $0.mtu = 0 }),
            ("MTU code 6", { $0.mtu = 6 }),
            ("neither a GID nor a LID", { $0.gid = [UInt8](repeating: 0, count: 16) }),
            ("multiple of 64", { $0.slotBytes = 100 }),
            ("receive slots", { $0.receiveSlots = 2 }),
            ("receive slots", { $0.receiveSlots = 100_000 }),
        ]
        for (reason, edit) in broken {
            var bad = sent
            edit(&bad)
            #expect { try bad.validate() } throws: { "\($0)".contains(reason) }
            // And the same through a frame.
            #expect { try RDMAConnectionParameters(frame: bad.frame(.rdmaAccept, requestID: 1), kind: .rdmaAccept) } throws: { "\($0)".contains(reason) }
        }
    }

    /// Work-completion failures are named with libibverbs' own words.
    @Test func completionErrorsUseLibibverbsText() {
        let cases: [(ibv_wc_status, String)] = [(IBV_WC_RETRY_EXC_ERR, "transport retry counter exceeded"),
                                                (IBV_WC_RNR_RETRY_EXC_ERR, "RNR retry counter exceeded"),
                                                (IBV_WC_WR_FLUSH_ERR, "Work Request Flushed Error"),
                                                (IBV_WC_LOC_LEN_ERR, "local length error")]
        for (status, text) in cases {
            let error = RDMAError.completion(status: Int32(status.rawValue), operation: "send")
            #expect(error.description.contains(text) && error.description.contains("RDMA send failed"), "\(error)")
        }
        #expect(RDMAError.post(operation: "receive", code: ENOMEM).description.contains(String(cString: strerror(ENOMEM))))
    }

    @Test func deviceChoiceNamesWhatIsMissing() throws {
        let devices = [RDMADevices.Device(name: "mlx5_0", port: nil, linkLayer: "Ethernet"),
                       RDMADevices.Device(name: "rxe0", port: 1, linkLayer: "Ethernet")]
        #expect(try RDMADevices.require(devices: devices).name == "rxe0")
        #expect(try RDMADevices.require(named: "rxe0", devices: devices).port == 1)
        #expect { try RDMADevices.require(named: "mlx5_1", devices: devices) } throws: { "\($0)".contains("mlx5_1 not found (devices: mlx5_0, rxe0)") }
        #expect { try RDMADevices.require(named: "mlx5_0", devices: devices) } throws: { "\($0)".contains("no active port") }
        #expect { try RDMADevices.require(devices: [devices[0]]) } throws: { "\($0)".contains("no port is active on mlx5_0") }
        #expect { try RDMADevices.require(devices: []) } throws: { "\($0)".contains("finds no device") && "\($0)".contains("--transport tcp") }
    }

    /// Without a device: `--transport rdma` refuses to start (worker and coordinator),
    /// naming what is missing; `auto` serves over TCP; a worker asked for RDMA anyway
    /// answers with an error and keeps the connection.
    @Test(.enabled(if: RDMADevices.list().isEmpty, "this machine has an RDMA device"))
    func withoutADeviceRDMAIsRefusedAndAutoUsesTCP() async throws {
        let fixture = "qwen3-moe-tiny"
        let jindoud = try Executable("jindoud")
        let worker = try jindoud.run(["worker", "--model", Fixtures.path(fixture), "--listen", "127.0.0.1:0", "--transport", "rdma"])
        #expect(worker.status != 0 && worker.stderr.contains("no RDMA device") && worker.stderr.contains("--transport tcp"), "\(worker.stderr)")
        let coordinator = try jindoud.run(["coordinator", "--model", Fixtures.path(fixture), "--listen", "127.0.0.1:0", "--transport", "rdma"])
        #expect(coordinator.status != 0 && coordinator.stderr.contains("no RDMA device"), "\(coordinator.stderr)")
        let fingerprint = try ModelFingerprint.compute(Checkpoint(directory: Fixtures.path(fixture)))
        #expect { _ = try WorkerPool(fingerprint: fingerprint, transport: .rdma, logger: testLogger) } throws: { "\($0)".contains("no RDMA device") }

        let running = try WorkerProcess(fixture: fixture, name: "no-rdma")
        defer { running.stop() }
        let auto = try WorkerPool(fingerprint: fingerprint, transport: .auto, logger: testLogger)
        #expect(auto.rdma == nil)
        _ = try await auto.add(running.endpoint)
        _ = try await auto.ping("no-rdma")
        await auto.closeAll()

        let connection = try RawConnection(running.endpoint)
        guard case .frame(let welcome) = try connection.handshake(fingerprint: fingerprint) else {
            Issue.record("no WELCOME")
            return
        }
        #expect(try WelcomeMessage(frame: welcome).acceptsRDMA == false)
        try connection.send(parameters().frame(.rdmaConnect, requestID: 5))
        let reply = connection.receive()
        #expect(reply.error?.code == .notReady && reply.error?.message.contains("does not accept RDMA") == true, "\(reply)")
        try connection.send(Heartbeat.frame(.ping, requestID: 6))
        guard case .frame(let pong) = connection.receive() else {
            Issue.record("the connection did not survive the refused RDMA_CONNECT")
            return
        }
        #expect(pong.kind == .pong)
    }
}

/// SoftRoCE (the kernel's rdma_rxe) on a veth pair whose worker end is in its own network
/// namespace: a real RDMA data path on one machine. Where the kernel has no rdma_rxe (as on
/// the machines this project is developed on) the suite is skipped with the reason printed;
/// JINDOU_REQUIRE_RDMA=1 makes that a failure.
enum SoftRoCE {
    struct Link {
        let namespace: String
        let coordinatorDevice: String
        let workerDevice: String
        let coordinatorIP = "10.79.0.1"
        let workerIP = "10.79.0.2"
    }

    static let required = ProcessInfo.processInfo.environment["JINDOU_REQUIRE_RDMA"] == "1"
    static let prefix = "jdr\(getpid() % 100_000)"

    static func run(_ arguments: [String]) throws {
        let tool = ["/usr/sbin/\(arguments[0])", "/sbin/\(arguments[0])", "/usr/bin/\(arguments[0])"]
            .first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let tool else { throw HarnessError("\(arguments[0]) is not installed") }
        let result = try Executable(url: URL(fileURLWithPath: tool)).run(Array(arguments.dropFirst()))
        guard result.status == 0 else {
            throw HarnessError("`\(arguments.joined(separator: " "))` failed: \(result.stderr.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
    }

    /// Sets the link up once per test process.
    static let link: Result<Link, HarnessError> = {
        guard geteuid() == 0 else { return .failure(HarnessError("SoftRoCE needs root")) }
        let link = Link(namespace: "\(prefix)ns", coordinatorDevice: "\(prefix)a", workerDevice: "\(prefix)b")
        do {
            try? run(["modprobe", "rdma_rxe"])
            try run(["ip", "netns", "add", link.namespace])
            try run(["ip", "link", "add", "\(prefix)va", "type", "veth", "peer", "name", "\(prefix)vb", "netns", link.namespace])
            try run(["ip", "addr", "add", "\(link.coordinatorIP)/24", "dev", "\(prefix)va"])
            try run(["ip", "link", "set", "\(prefix)va", "up"])
            try run(["ip", "-n", link.namespace, "addr", "add", "\(link.workerIP)/24", "dev", "\(prefix)vb"])
            try run(["ip", "-n", link.namespace, "link", "set", "\(prefix)vb", "up"])
            try run(["ip", "-n", link.namespace, "link", "set", "lo", "up"])
            try run(["rdma", "link", "add", link.coordinatorDevice, "type", "rxe", "netdev", "\(prefix)va"])
            try run(["ip", "netns", "exec", link.namespace, "rdma", "link", "add", link.workerDevice, "type", "rxe", "netdev", "\(prefix)vb"])
            return .success(link)
        } catch {
            tearDown(link)
            return .failure(error as? HarnessError ?? HarnessError("\(error)"))
        }
    }()

    static func tearDown(_ link: Link) {
        try? run(["rdma", "link", "delete", link.coordinatorDevice])
        try? run(["ip", "netns", "exec", link.namespace, "rdma", "link", "delete", link.workerDevice])
        try? run(["ip", "link", "delete", "\(prefix)va"])
        try? run(["ip", "netns", "delete", link.namespace])
    }

    static let enabled: Bool = {
        if required { return true }
        if case .failure(let reason) = link {
            print("SoftRoCE tests skipped: \(reason) (JINDOU_REQUIRE_RDMA=1 makes this a failure)")
            return false
        }
        return true
    }()
}

@Suite("RDMA over SoftRoCE", .serialized, .enabled(if: SoftRoCE.enabled, "needs root and the rdma_rxe kernel module"))
struct SoftRoCETests {
    /// Logits and greedy tokens through a worker in another namespace over RDMA equal the
    /// single-process engine; a killed worker fails the exchange at once.
    @Test func clusterOverRDMAEqualsTheEngine() async throws {
        let link = try SoftRoCE.link.get()
        defer { SoftRoCE.tearDown(link) }
        let fixture = "qwen3-moe-tiny"
        let worker = try WorkerProcess(fixture: fixture, name: "rdma0", host: link.workerIP,
                                       extraArguments: ["--transport", "rdma", "--rdma-device", link.workerDevice],
                                       launcher: ["/usr/sbin/ip", "netns", "exec", link.namespace])
        defer { worker.stop() }
        let coordinator = try await Coordinator.start(
            .init(modelDirectory: Fixtures.path(fixture), workers: [worker.endpoint], prefault: false, transport: .rdma,
                  rdmaDevice: link.coordinatorDevice),
            logger: testLogger)
        #expect(await coordinator.pool.transports() == ["rdma0": "rdma"])
        try await expectGoldenCasesMatch(coordinator.engine, fixture: fixture)
        // Frames larger than a slot (1 MiB) are cut into several SENDs and reassembled.
        let payload = ByteBuffer(bytes: (0..<(3 << 20) + 5).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        var ping = Heartbeat.frame(.ping, requestID: 77)
        ping.payload = payload
        let data = try await coordinator.pool.link("rdma0")
        #expect(try await data.exchange(ping).payload == payload)
        worker.kill()
        await #expect(throws: (any Error).self) { _ = try await coordinator.pool.ping("rdma0") }
        await coordinator.pool.closeAll()
    }
}
