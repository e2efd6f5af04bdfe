// Command flanneld is a trimmed flanneld for the nftpolicy e2e cluster.
//
// Upstream's main package (github.com/flannel-io/flannel) blank-imports every
// backend, including tencentvpc whose SDK the Go module proxy refuses, so it
// cannot be built from the proxy. This main wires only what the e2e cluster
// uses: the Kubernetes subnet manager (--kube-subnet-mgr) and the vxlan
// backend. The control flow follows upstream main.go of the pinned version.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/flannel-io/flannel/pkg/backend"
	_ "github.com/flannel-io/flannel/pkg/backend/vxlan" // registers "vxlan"
	"github.com/flannel-io/flannel/pkg/ip"
	"github.com/flannel-io/flannel/pkg/ipmatch"
	"github.com/flannel-io/flannel/pkg/subnet"
	"github.com/flannel-io/flannel/pkg/subnet/kube"
	"github.com/flannel-io/flannel/pkg/trafficmngr"
	"github.com/flannel-io/flannel/pkg/trafficmngr/iptables"
	"github.com/flannel-io/flannel/pkg/trafficmngr/nftables"
	"github.com/flannel-io/flannel/pkg/version"
	"github.com/joho/godotenv"
	log "k8s.io/klog/v2"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

var (
	kubeSubnetMgr     = flag.Bool("kube-subnet-mgr", false, "use the Kubernetes API for subnet assignment (required: the etcd subnet manager is not built in)")
	kubeAPIURL        = flag.String("kube-api-url", "", "Kubernetes API server URL (overrides the kubeconfig's server)")
	kubeConfigFile    = flag.String("kubeconfig-file", "", "kubeconfig file location")
	kubeAnnotPrefix   = flag.String("kube-annotation-prefix", "flannel.alpha.coreos.com", "Kubernetes annotation prefix")
	ipMasq            = flag.Bool("ip-masq", false, "set up IP masquerade for traffic leaving the overlay network")
	ipMasqNoRandom    = flag.Bool("ip-masq-fully-random-disable", false, "disable fully-random mode for MASQUERADE")
	subnetFile        = flag.String("subnet-file", "/run/flannel/subnet.env", "file where the subnet, MTU, ... env variables are written")
	netConfPath       = flag.String("net-config-path", "/etc/kube-flannel/net-conf.json", "path to the network configuration file (net-conf.json)")
	publicIP          = flag.String("public-ip", "", "IP accessible by other nodes for inter-host communication")
	publicIPv6        = flag.String("public-ipv6", "", "IPv6 accessible by other nodes for inter-host communication")
	resyncSeconds     = flag.Int("iptables-resync", 5, "resync period for traffic rules, in seconds")
	forwardRules      = flag.Bool("iptables-forward-rules", true, "add default accept rules for the pod network to the FORWARD chain")
	setNodeNetUnavail = flag.Bool("set-node-network-unavailable", true, "set the NetworkUnavailable node condition to false once ready")
	printVersion      = flag.Bool("version", false, "print version and exit")
	ifaces            multiFlag
)

func main() {
	flag.Var(&ifaces, "iface", "interface (IP or name) for inter-host communication; may be repeated, the first match wins")
	klogFlags := flag.NewFlagSet("klog", flag.ExitOnError)
	log.InitFlags(klogFlags)
	_ = klogFlags.Set("logtostderr", "true")
	for _, name := range []string{"v", "vmodule"} {
		f := klogFlags.Lookup(name)
		flag.Var(f.Value, f.Name, f.Usage)
	}
	flag.Parse()

	if *printVersion {
		fmt.Println(version.Version)
		return
	}
	if !*kubeSubnetMgr {
		fmt.Fprintln(os.Stderr, "flanneld: only --kube-subnet-mgr is supported in this build")
		os.Exit(2)
	}
	if err := run(); err != nil {
		log.Errorf("flanneld: %v", err)
		os.Exit(1)
	}
	log.Info("Exiting cleanly...")
}

func run() error {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	go func() {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
		select {
		case <-sigs:
			log.Info("signal received, shutting down")
			cancel()
		case <-ctx.Done():
		}
		signal.Stop(sigs)
	}()

	sm, err := kube.NewSubnetManager(ctx, *kubeAPIURL, *kubeConfigFile, *kubeAnnotPrefix, *netConfPath, *setNodeNetUnavail)
	if err != nil {
		return fmt.Errorf("creating subnet manager: %w", err)
	}
	log.Infof("Created subnet manager: %s", sm.Name())

	config, err := getConfig(ctx, sm)
	if err != nil {
		return nil // canceled while waiting
	}
	if config.BackendType != "vxlan" {
		return fmt.Errorf("backend %q is not built in (only vxlan)", config.BackendType)
	}
	ipStack, err := ipmatch.GetIPFamily(config.EnableIPv4, config.EnableIPv6)
	if err != nil {
		return err
	}
	if !config.EnableNFTables && config.EnableIPv4 {
		if _, err := os.Stat("/proc/sys/net/bridge/bridge-nf-call-iptables"); err != nil {
			log.Warningf("br_netfilter does not seem to be loaded: %v", err)
		}
	}

	extIface, err := lookupExtIface(ctx, sm, ipStack)
	if err != nil {
		return err
	}

	bm := backend.NewManager(ctx, sm, extIface)
	be, err := bm.GetBackend(config.BackendType)
	if err != nil {
		return fmt.Errorf("fetching backend: %w", err)
	}
	bn, err := be.RegisterNetwork(ctx, &wg, config)
	if err != nil {
		return fmt.Errorf("registering network: %w", err)
	}

	// Upstream exits when cleaning the unused rule set fails (e.g. no iptables
	// binary while EnableNFTables is set); here that is only a warning.
	if err := newTrafficManager(!config.EnableNFTables).CleanUp(ctx); err != nil {
		log.Warningf("cleaning up unused traffic manager rules: %v", err)
	}
	tm := newTrafficManager(config.EnableNFTables)
	if err := tm.Init(ctx); err != nil {
		return fmt.Errorf("initialising traffic manager: %w", err)
	}
	if *ipMasq {
		if err := tm.SetupAndEnsureMasqRules(ctx,
			config.Network, readCIDR4(*subnetFile, "FLANNEL_SUBNET"), readCIDR4(*subnetFile, "FLANNEL_NETWORK"),
			config.IPv6Network, readCIDR6(*subnetFile, "FLANNEL_IPV6_SUBNET"), readCIDR6(*subnetFile, "FLANNEL_IPV6_NETWORK"),
			bn.Lease(), *resyncSeconds, *ipMasqNoRandom); err != nil {
			return fmt.Errorf("setting up masquerade rules: %w", err)
		}
	}
	if *forwardRules {
		tm.SetupAndEnsureForwardRules(ctx, config.Network, config.IPv6Network, *resyncSeconds)
	}

	if err := sm.HandleSubnetFile(*subnetFile, config, *ipMasq, bn.Lease().Subnet, bn.Lease().IPv6Subnet, bn.MTU()); err != nil {
		log.Warningf("Failed to write subnet file: %s", err)
	} else {
		log.Infof("Wrote subnet file to %s; flannel is ready", *subnetFile)
	}

	wg.Add(1)
	go func() {
		defer wg.Done()
		bn.Run(ctx)
	}()

	// As upstream: a failure here (e.g. patching the node condition) is logged only.
	if err := sm.CompleteLease(ctx, bn.Lease(), &wg); err != nil {
		log.Errorf("CompleteLease: %v", err)
	}
	<-ctx.Done()
	return nil
}

func lookupExtIface(ctx context.Context, sm subnet.Manager, ipStack int) (*backend.ExternalInterface, error) {
	pub4, pub6 := *publicIP, *publicIPv6
	if a4, a6 := sm.GetStoredPublicIP(ctx); a4 != "" || a6 != "" {
		if a4 != "" {
			pub4 = a4
		}
		if a6 != "" {
			pub6 = a6
		}
	}
	pubOpts := ipmatch.PublicIPOpts{PublicIP: pub4, PublicIPv6: pub6}
	if len(ifaces) == 0 {
		want := pub4
		if want == "" {
			want = pub6
		}
		ext, err := ipmatch.LookupExtIface(want, "", "", ipStack, pubOpts)
		if err != nil {
			return nil, fmt.Errorf("finding an interface to use: %w", err)
		}
		return ext, nil
	}
	for _, name := range ifaces {
		ext, err := ipmatch.LookupExtIface(name, "", "", ipStack, pubOpts)
		if err != nil {
			log.Infof("Could not find valid interface matching %s: %s", name, err)
			continue
		}
		if ext != nil {
			return ext, nil
		}
	}
	return nil, errors.New("no interface matches --iface")
}

func getConfig(ctx context.Context, sm subnet.Manager) (*subnet.Config, error) {
	for {
		config, err := sm.GetNetworkConfig(ctx)
		if err == nil && config != nil {
			log.Infof("Found network config - Backend type: %s", config.BackendType)
			return config, nil
		}
		log.Errorf("Couldn't fetch network config: %v", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func newTrafficManager(useNFTables bool) trafficmngr.TrafficManager {
	if useNFTables {
		return &nftables.NFTablesManager{}
	}
	return &iptables.IPTablesManager{}
}

// readCIDR4 and readCIDR6 read the previous network/subnet from the subnet
// file so masquerade rules of an earlier run get replaced.
func readCIDR4(path, key string) ip.IP4Net {
	if _, c := readCIDR(path, key); c != nil && c.IP.To4() != nil {
		return ip.FromIPNet(c)
	}
	return ip.IP4Net{}
}

func readCIDR6(path, key string) ip.IP6Net {
	if _, c := readCIDR(path, key); c != nil && c.IP.To4() == nil {
		return ip.FromIP6Net(c)
	}
	return ip.IP6Net{IP: (*ip.IP6)(big.NewInt(0))}
}

func readCIDR(path, key string) (net.IP, *net.IPNet) {
	vals, err := godotenv.Read(path)
	if err != nil {
		return nil, nil
	}
	v, ok := vals[key]
	if !ok || strings.Contains(v, ",") {
		return nil, nil
	}
	i, c, err := net.ParseCIDR(v)
	if err != nil {
		return nil, nil
	}
	return i, c
}
