import Foundation
import JindouWire
import NIOCore
import NIOPosix
import Synchronization

/// A carrier of frames other than the TCP connection they were negotiated on (shared-memory
/// rings, an RDMA queue pair): frames in the TCP encoding, decoded by the same
/// `FrameDecoder`, sent in order by concurrent senders.
public protocol FrameChannel: AnyObject, Sendable {
    var isClosed: Bool { get }
    /// Closes this end and wakes everyone waiting on it.
    func close()
    /// Sends `frame`; concurrent senders are ordered (first come, first sent) and
    /// `whileOrdered` runs once this frame's turn has come, before its bytes go out.
    func send(_ frame: Frame, whileOrdered: () -> Void) async throws
    /// Starts the receiving thread (once). `deliver` gets every frame or decoding error in
    /// order; `idle` runs about every 100 ms while nothing arrives; `finished` runs once
    /// when the channel closes or fails, with the failure if any; it is closed by then.
    func startReceiving(maximumPayloadLength: Int, deliver: @escaping @Sendable (InboundFrame) -> Void,
                        idle: @escaping @Sendable () -> Void, finished: @escaping @Sendable ((any Error)?) -> Void)
}

extension FrameChannel {
    public func send(_ frame: Frame) async throws { try await send(frame, whileOrdered: {}) }
}

/// A worker link over a `FrameChannel` (shared memory, RDMA), with the authenticated TCP
/// connection it was negotiated on kept open beside it: nothing more is sent there, but
/// its closing (the worker process exiting or dying) closes the channel, so a waiting
/// exchange fails at once instead of at its deadline.
///
/// Replies are matched to requests in order, as on TCP; a reply later than the timeout
/// closes the link (later replies could no longer be matched).
public final class ChannelWorkerLink: WorkerLink {
    public let peer: String
    /// "shm" or "rdma".
    public let transport: String
    let control: TCPWorkerLink
    let channel: any FrameChannel
    private let timeoutSeconds: Double
    private let state = Mutex<(waiting: [ReplySlot], failure: LinkError?)>(([], nil))

    /// Takes over `channel` (already attached by the worker) beside `control`.
    public init(peer: String, transport: String, control: TCPWorkerLink, channel: any FrameChannel, timeoutSeconds: Double,
                maximumPayloadLength: Int = WireProtocol.defaultMaximumPayloadLength) {
        self.peer = peer
        self.transport = transport
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
                    self.fail(.broken(peer: peer, reason: "\(error)"))
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

