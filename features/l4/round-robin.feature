Feature: ztunnel round-robins new L4 connections over the ready replicas
  Seed 000 step 2 and seed 003: with no waypoint, the client's ztunnel picks the backend itself with
  an internally fixed L4 round robin per new connection. Exact assertions: a mesh that round-robins
  never fails them (false-alarm rate 0); any other pick fails them.

  Background:
    Given the guide's apps "in-ambient" and "client-in-ambient" are deployed
    And "in-ambient" is scaled to 3 replicas

  @L4-RR-1 @L4-RR-2
  Scenario: 12 requests over 3 replicas give each replica 4, in a repeating order
    When the client sends 12 requests to "http://in-ambient:8000/hostname"
    Then every request is answered
    And each of the 3 "in-ambient" replicas answered 4 requests
    And the replicas answered in a repeating order
