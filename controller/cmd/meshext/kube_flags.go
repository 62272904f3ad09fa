package main

import (
	"context"
	"flag"
	"time"

	"github.com/meshext/meshext/controller/ipam"
	"github.com/meshext/meshext/controller/kubestatus"
	"github.com/meshext/meshext/controller/run"
	"github.com/meshext/meshext/controller/source/kube"
)

// kubeFlags are `meshext run --source kubernetes`'s own flags.
type kubeFlags struct {
	kubeconfig string
	leaderID   string
	lease      time.Duration
	renew      time.Duration
	retry      time.Duration
}

var kubeFlagNames = []string{"kubeconfig", "leader-id", "leader-lease-duration", "leader-renew-deadline", "leader-retry-period"}

func (k *kubeFlags) add(fs *flag.FlagSet) {
	fs.StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig file of the API server (--source kubernetes; \"\" = the pod's service account, in a cluster)")
	fs.StringVar(&k.leaderID, "leader-id", "", "this replica's name in the leader Lease (default: host name and a random suffix)")
	fs.DurationVar(&k.lease, "leader-lease-duration", kubestatus.DefaultLeaseDuration, "how long a leader's Lease holds without renewal: a dead leader is replaced after at most this (plus --leader-retry-period)")
	fs.DurationVar(&k.renew, "leader-renew-deadline", kubestatus.DefaultRenewDeadline, "how long the leader keeps trying to renew before it stops leading")
	fs.DurationVar(&k.retry, "leader-retry-period", kubestatus.DefaultRetryPeriod, "how often replicas try to take or renew the Lease")
}

// set reports whether any of them was given.
func (k *kubeFlags) set(fs *flag.FlagSet) bool {
	given := false
	fs.Visit(func(f *flag.Flag) {
		for _, n := range kubeFlagNames {
			if f.Name == n {
				given = true
			}
		}
	})
	return given
}

// wire connects to the API server, waits until every kind is listed, and
// points cfg at the source, the VIPs in status and the leader.
func (k *kubeFlags) wire(ctx context.Context, cfg *run.Config) (*kubestatus.Leader, error) {
	cidr, err := ipam.ResolveCIDR(cfg.CIDR)
	if err != nil {
		return nil, err
	}
	rc, err := kube.RESTConfig(k.kubeconfig)
	if err != nil {
		return nil, err
	}
	rc.UserAgent = "meshext"
	src, err := kube.New(rc, kube.Config{Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	if err := src.Start(ctx); err != nil {
		return nil, err
	}
	leader, err := kubestatus.New(kubestatus.Config{REST: rc, Source: src, CIDR: cfg.CIDR, ReleaseAfter: cfg.VIPReleaseAfter,
		Identity: k.leaderID, LeaseDuration: k.lease, RenewDeadline: k.renew, RetryPeriod: k.retry, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	cfg.Source, cfg.IPAM, cfg.Compiled = src, src.VIPView(cidr), leader.Compiled
	return leader, nil
}
