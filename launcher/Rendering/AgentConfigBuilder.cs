using System.Text.Json;
using VmNet.Contract;
using VmNet.Spec;

namespace VmNet.Rendering;

/// <summary>
/// The guest agent's config (<c>vmnet/agent.json</c> on the seed, fw_cfg <see cref="Renderer.AgentFwCfg"/>,
/// <c>/etc/vmnet/agent.json</c> through user-data), made from the plan's <see cref="RenderInput"/> as the contract's own record rather than
/// templated, so it has the shape the agent parses by construction.
/// </summary>
public static class AgentConfigBuilder
{
    /// <summary>One bond per network, with the members in the plan's VF order.</summary>
    public static AgentConfig Build(RenderInput input)
    {
        var vm = input.Vm;
        return new AgentConfig
        {
            Version = AgentConfig.CurrentVersion,
            Hostname = vm.Guest.Hostname,
            ReportPort = Renderer.AgentPort,
            Networks = vm.Networks.Select((n, i) => new NetworkConfig
            {
                Name = n.Name,
                Mode = BondSpec.Mode,
                Miimon = n.Bond.Miimon,
                ArpInterval = n.Bond.ArpInterval,
                ArpTargets = n.Bond.ArpTargets.ToList(),
                Primary = Primary(n),
                FailOverMac = BondSpec.FailOverMac,
                UpDelay = n.Bond.UpDelay,
                DownDelay = n.Bond.DownDelay,
                NumGratArp = n.Bond.GratuitousArp,
                Mtu = n.Mtu,
                Members = input.Vfs.Where(a => a.NetworkIndex == i).Select(a => new MemberConfig { Name = a.Name, Mac = a.Mac }).ToList(),
                Dhcp = n.Address.Dhcp,
                Addresses = n.Address.Dhcp ? [] : [n.Address.ToString()],
                Gateway = string.IsNullOrEmpty(n.Gateway) ? null : n.Gateway,
                Dns = n.Dns.ToList(),
            }).ToList(),
        };
    }

    /// <summary>The config as the agent reads it: the contract's JSON, indented, ending in a newline.</summary>
    public static string Json(AgentConfig config) =>
        JsonSerializer.Serialize(config, AgentConfigWriteJsonContext.Default.AgentConfig) + "\n";

    /// <summary>The guest's name of the bond's primary member: the member on the spec's primary port.</summary>
    internal static string Primary(NetworkSpec n) => n.MemberName(Math.Max(0, n.Ports.ToList().IndexOf(n.Bond.Primary)));
}
