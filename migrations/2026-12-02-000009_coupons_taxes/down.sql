DROP TABLE customer_tax_rates;
DROP TABLE tax_rates;
DROP TABLE coupon_redemptions;
DROP TABLE coupons;
