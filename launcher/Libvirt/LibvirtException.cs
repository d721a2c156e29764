using System.Runtime.InteropServices;

namespace VmNet.Libvirt;

/// <summary>The libvirt error codes VmNet tells apart (<c>virErrorNumber</c> in libvirt 9.0's <c>virterror.h</c>).</summary>
public enum LibvirtErrorCode
{
    /// <summary>No error recorded (VIR_ERR_OK).</summary>
    Ok = 0,
    /// <summary>VIR_ERR_INTERNAL_ERROR.</summary>
    InternalError = 1,
    /// <summary>The driver does not support the function (VIR_ERR_NO_SUPPORT).</summary>
    NoSupport = 3,
    /// <summary>Cannot connect to the hypervisor (VIR_ERR_NO_CONNECT).</summary>
    NoConnect = 5,
    /// <summary>VIR_ERR_INVALID_ARG, also used for unsupported flags.</summary>
    InvalidArg = 8,
    /// <summary>VIR_ERR_OPERATION_FAILED.</summary>
    OperationFailed = 9,
    /// <summary>The XML is malformed or a value in it is wrong (VIR_ERR_XML_ERROR).</summary>
    XmlError = 27,
    /// <summary>The XML is not well formed; the message has the parser's line and column (VIR_ERR_XML_DETAIL).</summary>
    XmlDetail = 35,
    /// <summary>VIR_ERR_OPERATION_DENIED.</summary>
    OperationDenied = 29,
    /// <summary>A system call failed (VIR_ERR_SYSTEM_ERROR), e.g. the daemon's socket is missing.</summary>
    SystemError = 38,
    /// <summary>No such domain (VIR_ERR_NO_DOMAIN).</summary>
    NoDomain = 42,
    /// <summary>VIR_ERR_AUTH_FAILED.</summary>
    AuthFailed = 45,
    /// <summary>Not applicable in the domain's current state, e.g. destroying a stopped domain (VIR_ERR_OPERATION_INVALID).</summary>
    OperationInvalid = 55,
    /// <summary>VIR_ERR_CONFIG_UNSUPPORTED, e.g. an unknown domain type.</summary>
    ConfigUnsupported = 67,
    /// <summary>The requested metadata is absent (VIR_ERR_NO_DOMAIN_METADATA).</summary>
    NoDomainMetadata = 80,
    /// <summary>VIR_ERR_OPERATION_UNSUPPORTED.</summary>
    OperationUnsupported = 84,
    /// <summary>The XML does not validate against libvirt's RelaxNG schema (VIR_ERR_XML_INVALID_SCHEMA).</summary>
    XmlInvalidSchema = 92,
}

/// <summary>
/// A libvirt call failed. <see cref="Exception.Message"/> is one line naming what VmNet tried and what libvirt said;
/// <see cref="Code"/> tells the common cases apart.
/// </summary>
public sealed class LibvirtException : VmNetException
{
    /// <summary>Creates an exception; <paramref name="message"/> should be a complete one-line sentence.</summary>
    public LibvirtException(string message, string operation, LibvirtErrorCode code, int domain, string? nativeMessage)
        : base(message, ExitCodes.Failure)
    {
        Operation = operation;
        Code = code;
        Domain = domain;
        NativeMessage = nativeMessage;
    }

    /// <summary>What VmNet tried, e.g. "define the domain" or "start domain 'vm1'".</summary>
    public string Operation { get; }

    /// <summary>libvirt's error code; values missing from <see cref="LibvirtErrorCode"/> keep their number.</summary>
    public LibvirtErrorCode Code { get; }

    /// <summary>libvirt's error domain (<c>virErrorDomain</c>): the part of libvirt that raised the error, e.g. 12 for the test driver.</summary>
    public int Domain { get; }

    /// <summary>libvirt's own message, unchanged (may span lines, e.g. schema errors).</summary>
    public string? NativeMessage { get; }

    /// <summary>Reads and clears this thread's last libvirt error and turns it into an exception (not thrown).</summary>
    internal static unsafe LibvirtException FromLastError(string operation, string? hint = null)
    {
        var error = (VirError*)NativeMethods.virGetLastError();
        var code = error == null ? LibvirtErrorCode.Ok : (LibvirtErrorCode)error->Code;
        var domain = error == null ? 0 : error->Domain;
        var native = error == null ? null : NativeMethods.CopyString(error->Message);
        NativeMethods.virResetLastError();

        var detail = string.IsNullOrWhiteSpace(native) ? "libvirt reported no error message" : OneLine(native);
        var message = $"Cannot {operation}: {detail.TrimEnd('.')}" + (hint is null ? "" : $". {hint}");
        return new LibvirtException(message, operation, code, domain, native);
    }

    /// <summary>Throws the last libvirt error for <paramref name="operation"/>.</summary>
    internal static void ThrowLast(string operation) => throw FromLastError(operation);

    /// <summary>Throws the last libvirt error when a call returned -1.</summary>
    internal static int Ensure(int result, string operation) => result < 0 ? throw FromLastError(operation) : result;

    /// <summary>Throws the last libvirt error when a call returned a NULL handle.</summary>
    internal static T Ensure<T>(T handle, string operation) where T : SafeHandle
    {
        if (!handle.IsInvalid)
            return handle;
        handle.Dispose();
        throw FromLastError(operation);
    }

    // Schema errors come as several lines ("Unable to validate doc against ...\nElement domain has extra content: x").
    private static string OneLine(string text) =>
        string.Join("; ", text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));

    // The head of libvirt's struct _virError; the rest is not read.
    [StructLayout(LayoutKind.Sequential)]
    private struct VirError
    {
        public int Code;
        public int Domain;
        public nint Message;
    }
}
