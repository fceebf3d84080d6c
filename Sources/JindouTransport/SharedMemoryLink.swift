import Foundation
import JindouWire
import NIOCore
import NIOPosix
import Synchronization

/// How a coordinator reaches its workers (`--transport`).
public enum TransportChoice: String, CaseIterable, Sendable, CustomStringConvertible {
    /// Shared memory for a worker on this host (same kernel, an address local to this
    /// network namespace, and the worker accepts it), TCP otherwise or if attaching fails.
    case auto
    case tcp
    /// Shared memory, or the connection fails (for tests and benchmarks that must not fall back).
    case shm

    public var description: String { rawValue }
}

/// A worker link over shared memory (`SharedMemoryChannel`), with the authenticated TCP
/// connection it was negotiated on kept open beside it: nothing more is sent there, but
/// its closing (the worker process exiting or dying) closes the rings, so a waiting
/// exchange fails at once instead of at its deadline.
///
/// Replies are matched to requests in order, as on TCP; a reply later than the timeout
/// closes the link (later replies could no longer be matched).
public final class SharedMemoryWorkerLink: WorkerLink {
    public let peer: String
    public var transport: String { "shm" }
    let control: TCPWorkerLink
    let channel: SharedMemoryChannel
    private let timeoutSeconds: Double
    private let state = Mutex<(waiting: [ReplySlot], failure: LinkError?)>(([], nil))

    /// Takes over `channel` (already attached by the worker) beside `control`.
    public init(peer: String, control: TCPWorkerLink, channel: SharedMemoryChannel, timeoutSeconds: Double,
                maximumPayloadLength: Int = WireProtocol.defaultMaximumPayloadLength) {
        self.peer = peer
        self.control = control
        self.channel = channel
        self.timeoutSeconds = timeoutSeconds
        channel.startReceiving(
            maximumPayloadLength: maximumPayloadLength,
            deliver: { [weak self] event in self?.deliver(event) },
            idle: { [weak self] in self?.checkDeadline() },
            finished: { [weak self] error in
                guard let self else { return }
                if let error {
                    self.fail(.broken(peer: peer, reason: error.description))
                } else {
                    self.fail(.closed(peer: peer))
                }
            })
        control.closeFuture.whenComplete { _ in channel.close() }
    }

    public var isActive: Bool { state.withLock { $0.failure == nil } && control.isActive && !channel.isClosed }

    public func exchange(_ frame: Frame) async throws -> Frame {
        let slot = ReplySlot(deadline: ContinuousClock.now + .seconds(timeoutSeconds))
        do {
            try await channel.send(frame) {
                state.withLock { state in
                    if let failure = state.failure { slot.complete(.failure(failure)) } else { state.waiting.append(slot) }
                }
            }
        } catch {
            // A half-written frame leaves the stream unusable.
            fail(.closed(peer: peer))
            channel.close()
            slot.complete(.failure(LinkError.closed(peer: peer)))
        }
        return try await slot.value()
    }

    public func close() async {
        channel.close()
        await control.close()
    }

    private func deliver(_ event: InboundFrame) {
        let slot = state.withLock { state -> ReplySlot? in
            state.waiting.isEmpty ? nil : state.waiting.removeFirst()
        }
        guard let slot else {
            // A frame nobody asked for: the peer is confused; drop the link.
            fail(.protocolError(peer: peer, error: .unexpectedMessage(kind: "unsolicited", state: "with no request outstanding")))
            channel.close()
            return
        }
        switch event {
        case .frame(let frame):
            slot.complete(.success(frame))
        case .invalid(let error):
            slot.complete(.failure(LinkError.protocolError(peer: peer, error: error.error)))
        }
    }

    /// Runs on the receiving thread while idle: the oldest request past its deadline
    /// fails the link, as a TCP link's timer does.
    private func checkDeadline() {
        let late = state.withLock { state in state.waiting.first.map { $0.deadline < ContinuousClock.now } ?? false }
        if late {
            fail(.timedOut(peer: peer, seconds: timeoutSeconds))
            channel.close()
        }
    }

    private func fail(_ error: LinkError) {
        let waiting = state.withLock { state -> [ReplySlot] in
            if state.failure == nil { state.failure = error }
            defer { state.waiting = [] }
            return state.waiting
        }
        for slot in waiting { slot.complete(.failure(error)) }
    }
}

/// One awaited reply: completed once by whichever thread has it, awaited once.
final class ReplySlot: Sendable {
    let deadline: ContinuousClock.Instant
    private let state = Mutex<(result: Result<Frame, any Error>?, waiter: CheckedContinuation<Frame, any Error>?)>((nil, nil))

    init(deadline: ContinuousClock.Instant) { self.deadline = deadline }

    func complete(_ result: Result<Frame, any Error>) {
        let waiter = state.withLock { state -> CheckedContinuation<Frame, any Error>? in
            guard state.result == nil else { return nil }
            state.result = result
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(with: result)
    }

    func value() async throws -> Frame {
        try await withCheckedThrowingContinuation { continuation in
            let ready = state.withLock { state -> Result<Frame, any Error>? in
                if let result = state.result { return result }
                state.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(with: ready) }
        }
    }
}

/// Whether an address names this network namespace's own interfaces (loopback or an
/// address of a local device): with the same boot id, a worker there shares this host's
/// memory. An address of another namespace's veth is remote, as a real host's would be.
public enum LocalAddresses {
    public static func contains(_ host: String) -> Bool {
        if host == "localhost" || host.hasPrefix("127.") || host == "::1" { return true }
        guard let devices = try? System.enumerateDevices() else { return false }
        return devices.contains { device in device.address?.ipAddress == host }
    }
}
