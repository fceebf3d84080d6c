import Foundation
import JindouTransport
import NIOCore
import NIOPosix
import Testing

/// The emulated links of benchmarks and the netns harness (`jindouctl link`): the link
/// model's arithmetic, and a real relay between real sockets.
@Suite struct LinkEmulationTests {
    @Test func unitsParseAsTcSpellsThem() throws {
        func close(_ a: Double, _ b: Double) -> Bool { abs(a - b) <= 1e-12 * max(abs(a), abs(b)) }
        #expect(close(try LinkUnits.seconds("200us"), 200e-6))
        #expect(close(try LinkUnits.seconds("1ms"), 1e-3))
        #expect(close(try LinkUnits.seconds("0.5ms"), 0.5e-3))
        #expect(try LinkUnits.seconds("0") == 0)
        #expect(try LinkUnits.seconds("2s") == 2)
        #expect(try LinkUnits.bitsPerSecond("1gbit") == 1e9)
        #expect(try LinkUnits.bitsPerSecond("100mbit") == 1e8)
        for bad in ["fast", "-1ms", "1 parsec", ""] { #expect(throws: LinkUnitError.self) { try LinkUnits.seconds(bad) } }
        #expect(throws: LinkUnitError.self) { try LinkUnits.bitsPerSecond("0gbit") }
        #expect(throws: LinkUnitError.self) { try LinkProfile(rtt: "100us", jitter: "60us") }
    }

    @Test func aSerialLineDelaysBySizeThenPropagation() {
        // 1 Gb/s: 125 bytes per microsecond; 200 µs RTT: 100 µs each way.
        var model = LinkDirectionModel(profile: LinkProfile(roundTripSeconds: 200e-6, bitsPerSecond: 1e9), seed: 1)
        let first = model.release(bytes: 125_000, arrivingAt: 0)      // 1 ms on the line
        #expect(first == 1_000_000 + 100_000)
        // Arriving while the line is busy: queued behind the first chunk.
        let second = model.release(bytes: 125, arrivingAt: 500_000)
        #expect(second == 1_001_000 + 100_000)
        // After the line went idle: only its own transmission and the propagation.
        let third = model.release(bytes: 125, arrivingAt: 5_000_000)
        #expect(third == 5_001_000 + 100_000)
    }

    @Test func jitterStaysWithinBoundsNeverReordersAndRepeatsWithItsSeed() {
        let profile = LinkProfile(roundTripSeconds: 400e-6, jitterSeconds: 50e-6)
        var a = LinkDirectionModel(profile: profile, seed: 7)
        var b = LinkDirectionModel(profile: profile, seed: 7)
        var c = LinkDirectionModel(profile: profile, seed: 8)
        var last: UInt64 = 0
        var sawDifferentSeed = false
        for i in 0..<1000 {
            let now = UInt64(i) * 10_000
            let release = a.release(bytes: 100, arrivingAt: now)
            #expect(release == b.release(bytes: 100, arrivingAt: now))
            if release != c.release(bytes: 100, arrivingAt: now) { sawDifferentSeed = true }
            #expect(release >= last)
            #expect(release <= now + 250_000)
            // Never earlier than the shortest delay, unless held back behind an earlier chunk.
            #expect(release >= now + 150_000)
            last = release
        }
        #expect(sawDifferentSeed)
    }

    @Test func aRelayDelaysByTheRoundTripAndDeliversEveryByteInOrder() async throws {
        let echo = try await EchoServer(listen: Endpoint(host: "127.0.0.1", port: 0))
        let steady = try await LinkRelay(listen: Endpoint(host: "127.0.0.1", port: 0), target: echo.endpoint,
                                         profile: LinkProfile(roundTripSeconds: 4e-3))
        let relay = try await LinkRelay(listen: Endpoint(host: "127.0.0.1", port: 0), target: echo.endpoint,
                                        profile: LinkProfile(roundTripSeconds: 4e-3, jitterSeconds: 1e-3))

        // Round trips through the relay take at least the added RTT (a lower bound, which
        // no amount of machine noise can make fail).
        let client = try await EchoClient(to: steady.endpoint)
        let measured = try await LinkProbe.measure(samples: 20, bulkBytes: 1 << 20, bulkRepetitions: 2) { try await client.roundTrip($0) }
        #expect(measured.roundTripP10Seconds >= 4e-3)
        await client.close()
        await steady.close()

        // Bytes survive the jittered relay intact and in order, both ways.
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: relay.endpoint.port) { channel in
                channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
            }
        var generator = SystemRandomNumberGenerator()
        let sent = (0..<300_000).map { _ in UInt8.random(in: 0...255, using: &generator) }
        var received: [UInt8] = []
        try await channel.executeThenClose { inbound, outbound in
            for chunk in stride(from: 0, to: sent.count, by: 7_919) {
                try await outbound.write(ByteBuffer(bytes: sent[chunk..<min(chunk + 7_919, sent.count)]))
            }
            for try await buffer in inbound {
                received += buffer.readableBytesView
                if received.count >= sent.count { break }
            }
        }
        #expect(received == sent)
        await relay.close()
        await echo.close()
    }

    @Test func aRelayWhoseTargetIsDownClosesTheConnection() async throws {
        // A port with nothing listening: bind one, note it, close it.
        let probe = try await EchoServer(listen: Endpoint(host: "127.0.0.1", port: 0))
        let deadPort = probe.endpoint.port
        await probe.close()
        let relay = try await LinkRelay(listen: Endpoint(host: "127.0.0.1", port: 0), target: Endpoint(host: "127.0.0.1", port: deadPort),
                                        profile: LinkProfile(roundTripSeconds: 1e-3))
        let client = try await EchoClient(to: relay.endpoint)
        await #expect(throws: (any Error).self) { try await client.roundTrip(10) }
        await relay.close()
    }
}
